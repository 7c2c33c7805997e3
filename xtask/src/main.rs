//! `cargo xtask <command>`: everything a fresh clone needs, from rustup up.
//!
//! - `plugins`: add the wasm32-wasip2 target if missing, build every plugin
//!   in `plugins/` (its own workspace and target dir), copy the components
//!   to `target/plugins/`.
//! - `data`: generate the demo district databases into `target/demo/`.
//! - `demo [--check]`: plugins + data, then serve the gateway on
//!   127.0.0.1:8080 and show sample requests (`--check`: run them and exit).
//! - `test` (what CI runs, `.ci/run`): plugins + data, then every test of
//!   every workspace, the demo's sample requests (`demo --check` on another
//!   port), the consumer's check against it (`tests/consumer/`: validators,
//!   generated Python and TypeScript clients, a typed sync as the city),
//!   schemathesis, then rustfmt and clippy; it ends with one summary of
//!   every count (tests passed, failed, ignored; schemathesis cases).
//! - `consumer`: the demo's sample requests and the consumer's check only.
//! - `bench [n] [gate | instructions | telemetry | side | region |
//!   region-load]`: plugins, then the release-built benchmark (`side`
//!   installs nginx-light if missing; `region-load` is only the region
//!   under load, `n` its districts).
//! - `region [districts] [small|full]`: the generated region (docs/region.md):
//!   a database per district, the party-link system over all of them, four
//!   city platforms, and a gateway serving them on 127.0.0.1:8180.
//! - `lint`: rustfmt and clippy (`-D warnings`) over host and guest code.
//! - `schemathesis`: property-based API tests against the running demo.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("plugins") => plugins().map(|_| ()),
        Some("data") => data(),
        Some("demo") => demo(args.iter().any(|a| a == "--check"), &DEMO),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("lint") => lint(),
        Some("region") => region(&args[1..]),
        Some("schemathesis") => schemathesis(),
        Some("consumer") => demo_then(true, &DEMO_CHECK, consumer),
        _ => {
            Err("usage: cargo xtask <plugins | data | demo [--check] | region [districts] [small|full] | test | consumer | bench | lint | schemathesis>".into())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask/ sits at the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Result {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

/// What the test command ran, summed over every test binary and tool, so
/// the last lines of a CI log say how many tests ran (a log that ends in
/// a linter's silence or a server's access lines says nothing).
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    binaries: u64,
    schemathesis: Option<String>,
    steps: Vec<String>,
}

impl Tally {
    /// Reads one libtest summary line (`test result: ok. 3 passed; 0
    /// failed; 1 ignored; …`).
    fn add_libtest(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    fn print(&self) {
        println!("\n==================== cargo xtask test: summary ====================");
        println!(
            "rust tests: {} passed, {} failed, {} ignored, in {} test binaries",
            self.passed, self.failed, self.ignored, self.binaries
        );
        if let Some(st) = &self.schemathesis {
            println!("schemathesis: {st}");
        }
        for step in &self.steps {
            println!("{step}");
        }
    }
}

/// Runs a command whose standard output is echoed line by line and read
/// for test counts (libtest's `test result:` lines, schemathesis's
/// `N generated, N passed`).
fn run_counted(cmd: &mut Command, what: &str, tally: &mut Tally) -> Result {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("xtask: {what}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout().lock();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(stdout, "{line}");
            let trimmed = line.trim();
            tally.add_libtest(trimmed);
            if trimmed.contains(" generated, ") && trimmed.contains(" passed") {
                tally.schemathesis = Some(trimmed.to_string());
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("{what}: cannot wait: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

const WASM_TARGET: &str = "wasm32-wasip2";

fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run rustup (is it installed?): {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(
        Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .current_dir(root()),
        "adding the wasm32-wasip2 target",
    )
}

/// Build every plugin; returns the directory holding the components.
fn plugins() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let root = root();
    let wasm_target_dir = root.join("target/wasm");
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--manifest-path",
    ])
    .arg(root.join("plugins/Cargo.toml"))
    .arg("--target-dir")
    .arg(&wasm_target_dir);
    // Host build settings must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    run(&mut cmd, "building plugins (wasm32-wasip2)")?;

    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let built = wasm_target_dir.join(WASM_TARGET).join("release");
    let entries = std::fs::read_dir(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    let mut copied = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "wasm") {
            let dest = out.join(entry.file_name());
            std::fs::copy(&path, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            copied.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    copied.sort();
    eprintln!("xtask: plugins in {}: {}", out.display(), copied.join(", "));
    Ok(out)
}

fn data() -> Result {
    run(
        cargo().args([
            "run",
            "--quiet",
            "-p",
            "lianqiao-sim",
            "--",
            "generate",
            "--out",
            "target/demo",
        ]),
        "generating demo data",
    )?;
    // The demo simulators' credentials, read by the host from files (a
    // secret never sits in a config file, and never reaches a plugin).
    let secrets = root().join("target/demo/secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| format!("{}: {e}", secrets.display()))?;
    for name in ["party-link", "city-platform"] {
        let path = secrets.join(name);
        std::fs::write(&path, "demo-secret\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Where the demo's processes listen.
struct Ports {
    /// Plain HTTP (the demo's `plaintext_listen`).
    gateway: &'static str,
    /// HTTPS.
    https: &'static str,
    metrics: &'static str,
    party_link: &'static str,
    city_platform: &'static str,
}

const DEMO: Ports = Ports {
    gateway: "127.0.0.1:8080",
    https: "127.0.0.1:8443",
    metrics: "127.0.0.1:9464",
    party_link: "127.0.0.1:8091",
    city_platform: "127.0.0.1:8092",
};
/// `demo --check` inside `xtask test`: the gateway on another port, so a
/// demo left running does not collide. The simulators keep the ports the
/// shipped source configs name (a running demo's simulators, serving the
/// same seeded data, answer just as well).
const DEMO_CHECK: Ports = Ports {
    gateway: "127.0.0.1:18080",
    https: "127.0.0.1:18443",
    metrics: "127.0.0.1:19464",
    party_link: "127.0.0.1:8091",
    city_platform: "127.0.0.1:8092",
};

/// Sample requests the demo shows (and, with --check, runs).
/// The demo's sample requests: what, whose token (`-` for none), the
/// declared purpose, the path, the status it must get.
const SAMPLES: &[(&str, &str, &str, &str, u16)] = &[
    (
        "the eight street-level units of Huimin, as the district sees them: the city registry and the district joined",
        "district",
        "case-handling",
        "/v1/divisions?parent=150103&fields=name,level,households",
        200,
    ),
    (
        "one street, as the street itself",
        "street",
        "case-handling",
        "/v1/divisions/150103001",
        200,
    ),
    (
        "five grids of 新华西路街道",
        "street",
        "case-handling",
        "/v1/grids?division=150103001&limit=5",
        200,
    ),
    (
        "Saihan (its own schema) — 兴康社区's grids, as the city",
        "city",
        "case-handling",
        "/v1/grids?division=150105002001&fields=name,tier,households",
        200,
    ),
    (
        "Jining (another schema) — micro grids, as the region",
        "region",
        "statistics",
        "/v1/grids?division=150902&tier=micro&limit=3&fields=name,tier",
        200,
    ),
    (
        "all of Hohhot: Huimin and Saihan merged in one order",
        "city",
        "case-handling",
        "/v1/grids?division=1501&limit=4&fields=name",
        200,
    ),
    (
        "party members of 新华西路街道 as the street sees them: names and phones masked, ID numbers and ethnicity withheld (party-link, HMAC-signed by the host)",
        "street",
        "case-handling",
        "/v1/members?division=150103001&limit=2",
        200,
    ),
    (
        "the same grid's members as its grid worker sees them: names and phones in clear, ID numbers masked",
        "grid",
        "case-handling",
        "/v1/members?division=150103&limit=2&fields=name,phone,id_number,ethnicity,grid",
        200,
    ),
    (
        "the city asks for member details: refused, naming why",
        "city",
        "case-handling",
        "/v1/members?division=150103&limit=2",
        403,
    ),
    (
        "how many party members Huimin has (9,657), counted at the source; the city may not list them, so its count is protected (±3 noise, the same every time)",
        "city",
        "statistics",
        "/v1/stats?metric=members.count&division=150103",
        200,
    ),
    (
        "minority shares of a community, as the city: counts by ethnicity, small cells and empty ones suppressed alike",
        "city",
        "statistics",
        "/v1/stats?metric=members.count&division=150103001001&by=ethnicity",
        200,
    ),
    (
        "the city asks for ID numbers as statistics keys: refused, naming what can be grouped",
        "city",
        "statistics",
        "/v1/stats?metric=members.count&division=150103&by=id_number",
        400,
    ),
    (
        "grids by district and tier across three databases: one GROUP BY each",
        "region",
        "statistics",
        "/v1/stats?metric=grids.count&division=15&group_by=district&by=tier",
        200,
    ),
    (
        "service centres from the city platform (OAuth2 token kept by the host)",
        "district",
        "case-handling",
        "/v1/service-centers?division=150103&limit=3&fields=name,level",
        200,
    ),
    (
        "small grids with 60+ households, names only",
        "district",
        "case-handling",
        "/v1/grids?division=150103&tier=small&households[gte]=60&fields=name,households&limit=3",
        200,
    ),
    (
        "a mistake, answered with a code and a fix",
        "district",
        "case-handling",
        "/v1/grids?division=150103&colour=red",
        400,
    ),
    (
        "no credential",
        "-",
        "case-handling",
        "/v1/grids?division=150103",
        401,
    ),
];

/// Children killed when dropped, so no simulator outlives the demo.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a demo process writes: the terminal for a demo someone watches;
/// a file under target/demo/logs for a checked run (tests, CI), whose
/// every request would otherwise bury the results in access-log lines.
fn demo_output(check: bool, name: &str) -> Result<(Stdio, Stdio)> {
    if !check {
        return Ok((Stdio::inherit(), Stdio::inherit()));
    }
    let dir = root().join("target/demo/logs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let second = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((Stdio::from(file), Stdio::from(second)))
}

/// The last lines of a checked run's log, printed when the run failed.
fn show_log_tail(name: &str) {
    let path = root().join(format!("target/demo/logs/{name}.log"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    eprintln!("xtask: the last lines of {}:", path.display());
    for line in &lines[from..] {
        eprintln!("  {line}");
    }
}

fn spawn(binary: &Path, args: &[&str], check: bool) -> Result<Child> {
    let name = args.first().copied().unwrap_or("process");
    let (stdout, stderr) = demo_output(check, name)?;
    Command::new(binary)
        .args(args)
        .current_dir(root())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}

fn demo(check: bool, ports: &Ports) -> Result {
    demo_then(check, ports, |_| Ok(()))
}

/// The demo, then `after` against its gateway address (with `check`, the
/// demo stops when `after` returns).
fn demo_then(check: bool, ports: &Ports, after: impl FnOnce(&str) -> Result) -> Result {
    plugins()?;
    data()?;
    run(
        cargo().args([
            "build",
            "--quiet",
            "-p",
            "lianqiao-gateway",
            "-p",
            "lianqiao-sim",
        ]),
        "building the gateway and the simulators",
    )?;
    issuer_key()?;
    demo_certs()?;
    let sim = root().join("target/debug/lianqiao-sim");
    // Killed when this function returns, whichever way.
    let _simulators = Children(vec![
        spawn(&sim, &["party-link", "--listen", ports.party_link], check)?,
        spawn(
            &sim,
            &["city-platform", "--listen", ports.city_platform],
            check,
        )?,
    ]);
    // The gateway reads the registry from the city platform at start.
    for sim in [ports.party_link, ports.city_platform] {
        wait_answering(sim)?;
    }
    let addr = ports.gateway;
    let binary = root().join("target/debug/lianqiao");
    let (stdout, stderr) = demo_output(check, "gateway")?;
    let mut gateway = Command::new(&binary)
        .args([
            "serve",
            "--config",
            "config/lianqiao.toml",
            "--listen",
            ports.https,
            "--plaintext-listen",
            addr,
            "--metrics-listen",
            ports.metrics,
        ])
        .current_dir(root())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if check {
        eprintln!("xtask: the demo's processes log to target/demo/logs/");
    }
    let outcome = write_endpoints(ports)
        .and_then(|()| show_demo(&mut gateway, check, ports))
        .and_then(|()| after(ports.gateway));
    if check || outcome.is_err() {
        let _ = gateway.kill();
        let _ = gateway.wait();
        if check && outcome.is_err() {
            show_log_tail("gateway");
        }
        return outcome;
    }
    eprintln!("\nThe gateway keeps serving on http://{addr}; Ctrl-C stops it.");
    gateway.wait().map_err(|e| e.to_string())?;
    Ok(())
}

/// `cargo xtask region [districts] [small|full]`: write the generated
/// region into target/region, start its simulators and a gateway over it
/// (plain HTTP on 127.0.0.1:8180), and keep serving until Ctrl-C.
fn region(extra: &[String]) -> Result {
    let districts = extra
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(103);
    let scale = if extra.iter().any(|a| a == "small") {
        "small"
    } else {
        "full"
    };
    plugins()?;
    run(
        cargo().args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "lianqiao-gateway",
            "-p",
            "lianqiao-sim",
            "--bin",
            "lianqiao",
            "--bin",
            "lianqiao-sim",
        ]),
        "building the gateway and the simulators (release: a region is large)",
    )?;
    if !root().join("target/debug/lianqiao").exists() {
        run(
            cargo().args(["build", "--quiet", "-p", "lianqiao-gateway"]),
            "building the gateway's tools",
        )?;
    }
    issuer_key()?;
    let sim = root().join("target/release/lianqiao-sim");
    let n = districts.to_string();
    // Absolute: the database URLs written into the source files are
    // resolved from the sources' directory, not from here.
    let out = root().join("target/region");
    run(
        Command::new(&sim)
            .args(["region", "--out"])
            .arg(&out)
            .args(["--districts", &n, "--scale", scale])
            .current_dir(root()),
        "writing the region (a minute at full scale)",
    )?;
    let mut children = vec![spawn(
        &sim,
        &[
            "party-link",
            "--listen",
            "127.0.0.1:8191",
            "--region",
            &n,
            "--scale",
            scale,
        ],
        false,
    )?];
    // One platform per platform city, on 8192 and up, as the config says.
    for (i, city) in ["150100", "150200", "150400", "150600"].iter().enumerate() {
        let listen = format!("127.0.0.1:{}", 8192 + i);
        let client = format!("city-{city}=demo-secret");
        children.push(spawn(
            &sim,
            &[
                "city-platform",
                "--listen",
                &listen,
                "--region",
                &n,
                "--scale",
                scale,
                "--city",
                city,
                "--client",
                &client,
                "--rate-limit",
                "100000",
            ],
            false,
        )?);
    }
    let _simulators = Children(children);
    wait_answering("127.0.0.1:8191")?;
    let token = Command::new(root().join("target/debug/lianqiao"))
        .args([
            "auth",
            "token",
            "--key",
            "target/demo/keys/issuer.pem",
            "--sub",
            "region-operator",
            "--level",
            "region",
            "--division",
            "15",
        ])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot make a token: {e}"))?;
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    std::fs::write(root().join("target/region/region.token"), &token)
        .map_err(|e| format!("target/region/region.token: {e}"))?;
    eprintln!(
        "\nThe region's gateway serves http://127.0.0.1:8180 (a region token is in target/region/region.token):\n\
         \n  curl -s 127.0.0.1:8180/readyz | head -c 600\
         \n  curl -s -H \"Authorization: Bearer $(cat target/region/region.token)\" -H 'X-Purpose: case-handling' \\\n       '127.0.0.1:8180/v1/grids?division=15&limit=5'\
         \n  curl -s -H \"Authorization: Bearer $(cat target/region/region.token)\" -H 'X-Purpose: case-handling' \\\n       '127.0.0.1:8180/v1/stats?metric=grids.count&division=15&group_by=city'\
         \n  target/debug/lianqiao source show district-150103 --config target/region/config/lianqiao.toml\n\nCtrl-C stops it.\n"
    );
    let mut gateway = Command::new(root().join("target/release/lianqiao"))
        .args(["serve", "--config", "target/region/config/lianqiao.toml"])
        .current_dir(root())
        .spawn()
        .map_err(|e| format!("cannot start the gateway: {e}"))?;
    gateway.wait().map_err(|e| e.to_string())?;
    Ok(())
}

/// The demo's token issuer: an Ed25519 key pair in target/demo/keys (made
/// once; the gateway trusts the public half, see config/lianqiao.toml).
fn issuer_key() -> Result {
    let dir = root().join("target/demo/keys");
    if dir.join("issuer.pem").exists() && dir.join("issuer.pub.pem").exists() {
        return Ok(());
    }
    run(
        Command::new(root().join("target/debug/lianqiao"))
            .args(["auth", "keygen", "--out", "target/demo/keys"])
            .current_dir(root()),
        "making the demo's token issuer key",
    )
}

/// The demo's local CA and certificates in target/demo/tls (made once);
/// the CA also at target/demo/ca.pem for clients.
fn demo_certs() -> Result {
    let dir = root().join("target/demo/tls");
    if !dir.join("ca.pem").exists() {
        run(
            Command::new(root().join("target/debug/lianqiao"))
                .args(["auth", "demo-certs", "--out", "target/demo/tls"])
                .current_dir(root()),
            "making the demo's CA and certificates",
        )?;
    }
    std::fs::copy(dir.join("ca.pem"), root().join("target/demo/ca.pem"))
        .map(|_| ())
        .map_err(|e| format!("target/demo/ca.pem: {e}"))
}

/// One token for `sub` at `level` in `division`.
fn token(sub: &str, level: &str, division: &str, roles: &str) -> Result<String> {
    let out = Command::new(root().join("target/debug/lianqiao"))
        .args([
            "auth",
            "token",
            "--key",
            "target/demo/keys/issuer.pem",
            "--sub",
            sub,
            "--level",
            level,
            "--division",
            division,
            "--roles",
            roles,
            "--ttl",
            "2592000",
        ])
        .current_dir(root())
        .output()
        .map_err(|e| format!("lianqiao auth token: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "lianqiao auth token: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `target/demo/tokens.json`: a token per level, each for a real division
/// of the demo data (the grid is found through the gateway), plus an
/// operator who may explain anyone's access.
fn write_tokens(addr: &str) -> Result<Vec<(String, String)>> {
    let mut tokens = vec![
        (
            "region".to_string(),
            token("demo-region", "region", "15", "")?,
        ),
        ("city".to_string(), token("demo-city", "city", "1501", "")?),
        (
            "district".to_string(),
            token("demo-district", "district", "150103", "")?,
        ),
        (
            "street".to_string(),
            token("demo-street", "street", "150103001", "")?,
        ),
        (
            "community".to_string(),
            token("demo-community", "community", "150103001001", "")?,
        ),
    ];
    let (status, body) = http_get_as(
        addr,
        "/v1/grids?division=150103001001&limit=1&fields=code",
        Some(&tokens[4].1),
        "case-handling",
    )?;
    let grid = body
        .split("\"code\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .filter(|_| status == 200)
        .ok_or_else(|| format!("cannot find a grid of 150103001001 ({status}): {body}"))?
        .to_string();
    tokens.push(("grid".to_string(), token("demo-grid", "grid", &grid, "")?));
    tokens.push((
        "operator".to_string(),
        token("demo-operator", "region", "15", "policy-admin")?,
    ));
    let json = format!(
        "{{\n{}\n}}\n",
        tokens
            .iter()
            .map(|(level, t)| format!("  \"{level}\": \"{t}\""))
            .collect::<Vec<_>>()
            .join(",\n")
    );
    let path = root().join("target/demo/tokens.json");
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(tokens)
}

/// `target/demo/endpoints.json`: where each part of the demo listens.
fn write_endpoints(ports: &Ports) -> Result {
    let json = format!(
        "{{\n  \"gateway\": \"http://{}\",\n  \"party_link\": \"http://{}\",\n  \"city_platform\": \"http://{}\",\n  \"districts\": {{\n    \"huimin\": \"sqlite://target/demo/huimin.sqlite\",\n    \"saihan\": \"sqlite://target/demo/saihan.sqlite\",\n    \"jining\": \"sqlite://target/demo/jining.sqlite\"\n  }}\n}}\n",
        ports.gateway, ports.party_link, ports.city_platform
    );
    let path = root().join("target/demo/endpoints.json");
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))
}

fn show_demo(gateway: &mut Child, check: bool, ports: &Ports) -> Result {
    let addr = ports.gateway;
    wait_ready(gateway, addr)?;
    for sim in [ports.party_link, ports.city_platform] {
        wait_answering(sim)?;
    }
    println!("\nLianqiao demo (addresses also in target/demo/endpoints.json)");
    println!(
        "  gateway                   https://{} (CA: target/demo/ca.pem), plain http://{addr} for local tools",
        ports.https
    );
    println!(
        "  party-link simulator      http://{}  (appKey demo / secret demo-secret, HMAC-signed POSTs)",
        ports.party_link
    );
    println!(
        "  city platform simulator   http://{}  (OAuth2 client demo / demo-secret)",
        ports.city_platform
    );
    println!(
        "  districts (SQLite)        huimin 150103, saihan 150105, jining 150902 in target/demo/"
    );
    println!("  the API, described        http://{addr}/openapi.json");
    println!(
        "  metrics (Prometheus)      http://{}/metrics\n",
        ports.metrics
    );
    println!(
        "# the city platform directly: a token, then Huimin's streets\nTOKEN=$(curl -s -d 'grant_type=client_credentials&client_id=demo&client_secret=demo-secret' http://{0}/oauth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\ncurl -s -H \"Authorization: Bearer $TOKEN\" 'http://{0}/divisions?parentCode=150103'\n",
        ports.city_platform
    );
    let tokens = write_tokens(addr)?;
    println!(
        "Every /v1 request needs a token and a purpose. target/demo/tokens.json holds one\ntoken per level (region 15, city 1501, district 150103, street 150103001,\ncommunity 150103001001, one of its grids), and `operator` (policy-admin).\n"
    );
    for (what, level, purpose, path, expected) in SAMPLES {
        let token = tokens
            .iter()
            .find(|(l, _)| l == level)
            .map(|(_, t)| t.as_str());
        let auth = match token {
            Some(_) => format!(
                "-H \"Authorization: Bearer $(sed -n 's/ *\"{level}\": \"\\(.*\\)\",*/\\1/p' target/demo/tokens.json)\" "
            ),
            None => String::new(),
        };
        println!("# {what}\ncurl -s {auth}-H 'X-Purpose: {purpose}' 'http://{addr}{path}'");
        let (status, body) = http_get_as(addr, path, token, purpose)?;
        let shown: String = body.chars().take(600).collect();
        println!(
            "→ {status}\n{shown}{}\n",
            if body.len() > shown.len() { " …" } else { "" }
        );
        if check && status != *expected {
            return Err(format!(
                "{path}: expected HTTP {expected}, got {status}: {shown}"
            ));
        }
    }
    case_walk(addr, ports.city_platform, &tokens, check)?;
    println!(
        "# over HTTPS (TLS 1.2/1.3, the demo's CA), as the district\ncurl -s --cacert target/demo/ca.pem -H \"Authorization: Bearer $(sed -n 's/ *\"district\": \"\\(.*\\)\",*/\\1/p' target/demo/tokens.json)\" -H 'X-Purpose: case-handling' 'https://{0}/v1/grids?division=150103&limit=2'\n\n# a system caller authenticated by its client certificate (mTLS): the city platform\ncurl -s --cacert target/demo/ca.pem --cert target/demo/tls/city-platform.pem --key target/demo/tls/city-platform.key -H 'X-Purpose: statistics' 'https://{0}/v1/stats?metric=members.count&division=1501&group_by=district'\n",
        ports.https
    );
    println!(
        "# what the policy decides for you, and which policies decided it\ncurl -s -H \"Authorization: Bearer $(sed -n 's/ *\"street\": \"\\(.*\\)\",*/\\1/p' target/demo/tokens.json)\" -H 'X-Purpose: case-handling' 'http://{addr}/v1/_explain?resource=members'\n"
    );
    Ok(())
}

fn wait_ready(gateway: &mut Child, addr: &str) -> Result {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(status)) = gateway.try_wait() {
            return Err(format!("the gateway exited ({status}) before it was ready"));
        }
        if matches!(http_get(addr, "/readyz"), Ok((200, _))) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("the gateway was not ready within 60 s".into())
}

/// Wait until something answers HTTP at `addr` (the simulators generate
/// their data first).
fn wait_answering(addr: &str) -> Result {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        if http_get(addr, "/").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("nothing answered at {addr} within 60 s"))
}

/// A minimal HTTP/1.1 GET, so xtask needs no dependencies.
fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    http_get_as(addr, path, None, "")
}

/// GET with a bearer token and a declared purpose.
fn http_get_as(
    addr: &str,
    path: &str,
    token: Option<&str>,
    purpose: &str,
) -> Result<(u16, String)> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
        headers.push(("X-Purpose", purpose));
    }
    http_send(addr, "GET", path, &headers, "")
}

/// One HTTP/1.1 request (plain), its status and body.
fn http_send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(stream, "{head}\r\n{body}").map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The text of the first `"key":"…"` in a JSON body (the demo has no
/// JSON parser; its answers are the gateway's own, flat enough for this).
fn json_text(body: &str, key: &str) -> Option<String> {
    body.split(&format!("\"{key}\":\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

/// The demo's case walk: found in a grid, escalated to its community and
/// its street, whistled to the city, answered on the city platform and
/// evaluated there, mirrored back — then its one timeline.
fn case_walk(addr: &str, city: &str, tokens: &[(String, String)], check: bool) -> Result {
    let token = |level: &str| {
        tokens
            .iter()
            .find(|(l, _)| l == level)
            .map(|(_, t)| format!("Bearer {t}"))
            .ok_or_else(|| format!("no {level} token"))
    };
    let (grid, community, street) = (token("grid")?, token("community")?, token("street")?);
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let counter = std::cell::Cell::new(0u32);
    let write = |auth: &str,
                 path: &str,
                 step: &str,
                 body: &str,
                 expected: &[u16]|
     -> Result<String> {
        counter.set(counter.get() + 1);
        let key = format!("demo-{run_id}-{}", counter.get());
        let level = tokens
            .iter()
            .find(|(_, t)| auth.ends_with(t.as_str()))
            .map_or("?", |(l, _)| l.as_str());
        println!(
            "# {step}\ncurl -s -X POST -H \"Authorization: Bearer $(sed -n 's/ *\"{level}\": \"\\(.*\\)\",*/\\1/p' target/demo/tokens.json)\" -H 'X-Purpose: case-handling' -H 'Idempotency-Key: {key}' -H 'Content-Type: application/json' -d '{body}' 'http://{addr}{path}'"
        );
        let (status, answer) = http_send(
            addr,
            "POST",
            path,
            &[
                ("Authorization", auth),
                ("X-Purpose", "case-handling"),
                ("Idempotency-Key", &key),
                ("Content-Type", "application/json"),
            ],
            body,
        )?;
        let state = json_text(&answer, "state").unwrap_or_default();
        let case_loop = json_text(&answer, "loop").unwrap_or_default();
        println!("→ {status}: the case is `{state}` in the {case_loop} loop\n");
        if check && !expected.contains(&status) {
            return Err(format!(
                "{step}: expected HTTP {expected:?}, got {status}: {answer}"
            ));
        }
        Ok(answer)
    };
    println!("## A case along the four loops (docs/cases.md)\n");
    let grid_division = {
        let (status, body) = http_get_as(
            addr,
            "/v1/grids?division=150103001001&limit=1&fields=code",
            tokens
                .iter()
                .find(|(l, _)| l == "community")
                .map(|(_, t)| t.as_str()),
            "case-handling",
        )?;
        json_text(&body, "code")
            .filter(|_| status == 200)
            .ok_or("no grid for the case walk")?
    };
    let created = write(
        &grid,
        "/v1/cases",
        "found in the grid (发现)",
        &format!(
            r#"{{"division":"{grid_division}","title":"小区排水管道堵塞","category":"市政设施","note":"网格员巡查发现"}}"#
        ),
        &[201],
    )?;
    let id = json_text(&created, "id").ok_or("no case id in the answer")?;
    let moves = format!("/v1/cases/{id}/transitions");
    write(
        &grid,
        &moves,
        "assessed by the grid (研判)",
        r#"{"to":"assessed"}"#,
        &[200],
    )?;
    write(
        &grid,
        &moves,
        "escalated to the community",
        r#"{"to":"escalated","note":"需社区协调"}"#,
        &[200],
    )?;
    write(
        &community,
        &moves,
        "escalated to the street",
        r#"{"to":"escalated","note":"需街道协调"}"#,
        &[200],
    )?;
    let whistled = write(
        &street,
        &moves,
        "whistled to the city (吹哨)",
        r#"{"to":"whistled","note":"需住建部门报到"}"#,
        &[200, 202],
    )?;
    // 202: the city was slow and the gateway's worker finishes the whistle.
    let mut linked = json_text(&whistled, "linked_case").unwrap_or_default();
    let street_token = tokens
        .iter()
        .find(|(l, _)| l == "street")
        .map(|(_, t)| t.as_str());
    let began = Instant::now();
    while linked.is_empty() && began.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        let (_, case) = http_get_as(
            addr,
            &format!("/v1/cases/{id}"),
            street_token,
            "case-handling",
        )?;
        linked = json_text(&case, "linked_case").unwrap_or_default();
    }
    if check && linked.is_empty() {
        return Err(format!(
            "the whistle of {id} was not filed with the city within 20 s"
        ));
    }
    println!(
        "# the city platform files it as {linked}; its departments answer there (报到, 反馈, 评价, 办结)"
    );
    let (_, issued) = http_send(
        city,
        "POST",
        "/oauth/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
    )?;
    let bearer = format!(
        "Bearer {}",
        json_text(&issued, "access_token").unwrap_or_default()
    );
    for action in [
        r#"{"action":"report-in"}"#,
        r#"{"action":"feedback"}"#,
        r#"{"action":"evaluate","satisfaction":5}"#,
        r#"{"action":"close"}"#,
    ] {
        let (status, answer) = http_send(
            city,
            "POST",
            &format!("/cases/{linked}/actions"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            action,
        )?;
        println!(
            "curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -d '{action}' 'http://{city}/cases/{linked}/actions' → {status}"
        );
        if check && status != 200 {
            return Err(format!("the city platform's {action}: {status}: {answer}"));
        }
    }
    // The gateway mirrors the city's moves within a few seconds.
    let path = format!("/v1/cases/{id}");
    let began = Instant::now();
    let (mut status, mut body) = http_get_as(addr, &path, street_token, "case-handling")?;
    while json_text(&body, "state").as_deref() != Some("closed")
        && began.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(500));
        (status, body) = http_get_as(addr, &path, street_token, "case-handling")?;
    }
    println!(
        "\n# its one timeline, as the street sees it\ncurl -s -H \"Authorization: Bearer $(sed -n 's/ *\"street\": \"\\(.*\\)\",*/\\1/p' target/demo/tokens.json)\" -H 'X-Purpose: case-handling' 'http://{addr}{path}'\n→ {status}"
    );
    for step in body.split("{\"id\":").skip(2) {
        let field = |k: &str| json_text(step, k).unwrap_or_default();
        println!(
            "  {} {:<12} by {:<10} {}",
            field("at"),
            field("state"),
            field("by_level"),
            field("note")
        );
    }
    println!();
    if check && json_text(&body, "state").as_deref() != Some("closed") {
        return Err(format!("the case walk did not end closed: {body}"));
    }
    Ok(())
}

fn test(extra: &[String]) -> Result {
    let started = Instant::now();
    let mut tally = Tally::default();
    let outcome = test_steps(extra, &mut tally);
    tally.print();
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    match &outcome {
        Ok(()) => println!("cargo xtask test: OK in {minutes:.1} min"),
        Err(e) => println!("cargo xtask test: FAILED after {minutes:.1} min: {e}"),
    }
    outcome
}

fn test_steps(extra: &[String], tally: &mut Tally) -> Result {
    let plugin_dir = plugins()?;
    data()?;
    // The shipped config names the demo's issuer key and certificates: make
    // them before the tests that load it (with the binary the tests build).
    run(
        cargo().args(["build", "--quiet", "-p", "lianqiao-gateway"]),
        "building the gateway",
    )?;
    issuer_key()?;
    demo_certs()?;
    // Guest-side crates (SDK, plugins) test on the host target.
    run_counted(
        cargo()
            .args([
                "test",
                "--manifest-path",
                "plugins/Cargo.toml",
                "--workspace",
                "--target-dir",
                "target/guest-tests",
            ])
            .env_remove("CARGO_TARGET_DIR"),
        "testing the SDK and plugins",
        tally,
    )?;
    let prometheus = prometheus()?;
    let chromedriver = chromedriver()?;
    run_counted(
        cargo()
            .args(["test", "--workspace"])
            .args(extra)
            .env("LIANQIAO_PLUGIN_DIR", &plugin_dir)
            .env("LIANQIAO_TEST_PROMETHEUS", &prometheus)
            .env("LIANQIAO_TEST_CHROMEDRIVER", &chromedriver),
        "testing the gateway, host, simulators and end to end",
        tally,
    )?;
    if tally.failed > 0 {
        return Err(format!("{} tests failed", tally.failed));
    }
    // The demo is part of the product: run its sample requests too, on a
    // port of its own so a demo left running does not collide; then read
    // its API the way the city platform does (`tests/consumer/`).
    demo_then(true, &DEMO_CHECK, consumer)?;
    tally
        .steps
        .push("demo samples and consumer check (validators, generated clients, docs/api.md examples, typed sync): OK".into());
    schemathesis_with(tally)?;
    lint()?;
    tally
        .steps
        .push("rustfmt and clippy -D warnings (host, plugins and SDK): clean".into());
    Ok(())
}

/// `pip install` into the consumer's venv.
fn pip_install(python: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result {
    run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(args),
        what,
    )
}

/// A token from target/demo/tokens.json by its name (`city`, `district`, …).
fn demo_token(name: &str) -> Result<String> {
    let tokens = std::fs::read_to_string(root().join("target/demo/tokens.json"))
        .map_err(|e| format!("target/demo/tokens.json: {e}"))?;
    tokens
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("\"{name}\": \"")))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .ok_or(format!("no {name} token in target/demo/tokens.json"))
}

/// Run every example of docs/api.md: in its ```sh blocks, each `curl`
/// line after a `# → <status> [code]` comment runs as written (bash, with
/// `$LIANQIAO`, `$CITY` and `$DISTRICT` set as the guide says) and must
/// get that status, and the code or reason when one is named.
fn api_guide_examples(addr: &str, city: &str, district: &str) -> Result {
    let guide = std::fs::read_to_string(root().join("docs/api.md"))
        .map_err(|e| format!("docs/api.md: {e}"))?;
    let (mut in_sh, mut expect, mut ran) = (false, None::<(u16, Option<String>)>, 0);
    for line in guide.lines().map(str::trim) {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# → ") {
            let mut words = rest.split_whitespace();
            let status = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or(format!("docs/api.md: no status in `{line}`"))?;
            let code = words
                .next()
                .filter(|w| {
                    w.contains('_') && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
                .map(str::to_string);
            expect = Some((status, code));
        } else if line.starts_with("curl ") {
            let (status, code) = expect.take().ok_or(format!(
                "docs/api.md: `{line}` has no `# → <status>` above it"
            ))?;
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!("{line} -w '\\n%{{http_code}}'"))
                .env("LIANQIAO", format!("http://{addr}"))
                .env("CITY", city)
                .env("DISTRICT", district)
                .output()
                .map_err(|e| format!("bash: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let (body, got) = text.rsplit_once('\n').unwrap_or(("", &text));
            if got.trim() != status.to_string()
                || code
                    .as_ref()
                    .is_some_and(|c| !body.contains(&format!("\"{c}\"")))
            {
                return Err(format!(
                    "docs/api.md: `{line}` answered {got} (expected {status}{}): {}",
                    code.map(|c| format!(" {c}")).unwrap_or_default(),
                    body.chars().take(400).collect::<String>()
                ));
            }
            ran += 1;
        }
    }
    if ran < 10 {
        return Err(format!("docs/api.md: only {ran} examples found"));
    }
    eprintln!("xtask: the {ran} examples of docs/api.md answer as documented");
    Ok(())
}

/// The consumer's check against a running gateway: the OpenAPI document
/// through `openapi-spec-validator` and `redocly lint`, a Python client
/// from `openapi-python-client` and TypeScript types from
/// `openapi-typescript` (checked with `tsc`), then a typed sync as the
/// city through the generated client. The tools come from PyPI and npm at
/// the versions `tests/consumer/` pins, into `target/consumer/`.
fn consumer(addr: &str) -> Result {
    let dir = root().join("target/consumer");
    let tests = root().join("tests/consumer");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "creating target/consumer/venv",
        )?;
    }
    pip_install(
        &python,
        &["-r".as_ref(), tests.join("requirements.txt").as_os_str()],
        "installing the consumer's Python tools (PyPI)",
    )?;
    for file in ["package.json", "redocly.yaml"] {
        std::fs::copy(tests.join(file), dir.join(file))
            .map_err(|e| format!("copying tests/consumer/{file}: {e}"))?;
    }
    run(
        Command::new("npm")
            .args([
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--no-save",
            ])
            .current_dir(&dir),
        "installing the consumer's npm tools",
    )?;

    let (status, document) = http_get(addr, "/openapi.json")?;
    if status != 200 {
        return Err(format!("/openapi.json answered {status}"));
    }
    let spec = dir.join("openapi.json");
    std::fs::write(&spec, document).map_err(|e| format!("{}: {e}", spec.display()))?;
    run(
        Command::new(venv.join("bin/openapi-spec-validator")).arg(&spec),
        "openapi-spec-validator /openapi.json",
    )?;
    let bin = dir.join("node_modules/.bin");
    run(
        Command::new(bin.join("redocly"))
            .args(["lint", "--format", "stylish", "--config"])
            .arg(dir.join("redocly.yaml"))
            .arg(&spec),
        "redocly lint /openapi.json",
    )?;
    let python_out = dir.join("python");
    let _ = std::fs::remove_dir_all(&python_out);
    // Its post-generation hooks run `ruff` (a dependency installed beside
    // it in the venv): the venv's bin goes first on PATH.
    let path = match env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![venv.join("bin")];
            dirs.extend(env::split_paths(&p));
            env::join_paths(dirs).map_err(|e| e.to_string())?
        }
        None => venv.join("bin").into_os_string(),
    };
    run(
        Command::new(venv.join("bin/openapi-python-client"))
            .env("PATH", path)
            .args(["generate", "--fail-on-warning", "--path"])
            .arg(&spec)
            .arg("--output-path")
            .arg(&python_out),
        "openapi-python-client generate (default names)",
    )?;
    pip_install(
        &python,
        &["--no-deps".as_ref(), python_out.as_os_str()],
        "installing the generated Python client",
    )?;
    let ts = dir.join("ts");
    std::fs::create_dir_all(&ts).map_err(|e| format!("{}: {e}", ts.display()))?;
    run(
        Command::new(bin.join("openapi-typescript"))
            .arg(&spec)
            .arg("--output")
            .arg(ts.join("schema.d.ts")),
        "openapi-typescript",
    )?;
    run(
        Command::new(bin.join("tsc"))
            .arg("--project")
            .arg(tests.join("tsconfig.json")),
        "tsc: the generated TypeScript types (tests/consumer/check.ts)",
    )?;
    let city = demo_token("city")?;
    api_guide_examples(addr, &city, &demo_token("district")?)?;
    run(
        Command::new(&python)
            .arg(tests.join("sync.py"))
            .arg(&spec)
            .arg(&python_out)
            .arg(format!("http://{addr}"))
            .arg(city),
        "the city's typed sync through the generated client (tests/consumer/sync.py)",
    )
}

/// The Prometheus server the scrape test runs (Debian's package, installed
/// with apt-get when missing). `LIANQIAO_TEST_PROMETHEUS` names another.
fn prometheus() -> Result<String> {
    if let Ok(path) = std::env::var("LIANQIAO_TEST_PROMETHEUS") {
        return Ok(path);
    }
    debian_tool(
        "prometheus",
        "--version",
        "prometheus",
        "for the scrape test",
    )?;
    Ok("prometheus".into())
}

/// The console's browser test drives Debian's Chromium through its
/// ChromeDriver (both installed with apt-get when missing; nothing is
/// downloaded at run time). `LIANQIAO_TEST_CHROMEDRIVER` names another.
fn chromedriver() -> Result<String> {
    if let Ok(path) = std::env::var("LIANQIAO_TEST_CHROMEDRIVER") {
        return Ok(path);
    }
    debian_tool(
        "chromium",
        "--version",
        "chromium",
        "for the console's browser test",
    )?;
    debian_tool(
        "chromedriver",
        "--version",
        "chromium-driver",
        "for the console's browser test",
    )?;
    Ok("chromedriver".into())
}

/// Install Debian `package` with apt-get unless `program` (run with
/// `version_arg`) already answers.
fn debian_tool(program: &str, version_arg: &str, package: &str, why: &str) -> Result {
    let found = || {
        Command::new(program)
            .arg(version_arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found() {
        return Ok(());
    }
    let install = || {
        run(
            Command::new("apt-get")
                .args(["install", "-y", "-q", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &format!("installing Debian package `{package}` {why}"),
        )
    };
    // A fresh machine may not have read the package lists yet.
    if install().is_err() {
        run(
            Command::new("apt-get").args(["update", "-q"]),
            "reading Debian's package lists",
        )?;
        install()?;
    }
    if !found() {
        return Err(format!(
            "`{program}` is still missing after apt-get install {package}"
        ));
    }
    Ok(())
}

/// Property-based API testing with schemathesis (PyPI) against the
/// running demo's `/openapi.json`: no 5xx, and every response matches the
/// schema. Installs schemathesis with pip when `st` is missing.
fn schemathesis() -> Result {
    let mut tally = Tally::default();
    schemathesis_with(&mut tally)
}

fn schemathesis_with(tally: &mut Tally) -> Result {
    let have_st = Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_st {
        run(
            Command::new("python3").args(["-m", "pip", "install", "--quiet", "schemathesis"]),
            "installing schemathesis (PyPI)",
        )?;
    }
    demo_then(true, &DEMO_CHECK, |addr| {
        // As a district: most random divisions are outside it (403), some inside.
        let district = demo_token("district")?;
        // Which refusals count as refusals (413 among them).
        let config = root().join("tests/schemathesis/schemathesis.toml");
        run_counted(
            Command::new("st").args([
                "--config-file",
                &config.display().to_string(),
                "run",
                &format!("http://{addr}/openapi.json"),
                "--header",
                &format!("Authorization: Bearer {district}"),
                "--header",
                "X-Purpose: case-handling",
                // Every check, positive and negative data (`--mode all`),
                // and every phase including the stateful one (it follows
                // the document's links: next pages, a listed division).
                "--checks",
                "all",
                // Not `positive_data_acceptance`: requests valid by the
                // schema alone may still be refused by rules OpenAPI
                // cannot state (at most `server.max_filters` filters; `by`
                // and filters only on fields of the metric's resource;
                // `parent` inside `division`), and random valid codes
                // fall outside the caller's jurisdiction (403).
                "--exclude-checks",
                "positive_data_acceptance",
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "30",
                "--seed",
                "20231101",
                // One worker: with two, hypothesis's lambda descriptions parse
                // Python source in two threads at once and CPython 3.11's
                // parser can fail with "AST constructor recursion depth
                // mismatch" (CPython gh-106905), a tool crash, not a finding.
                "--workers",
                "1",
            ]),
            "schemathesis against /openapi.json",
            tally,
        )
    })
}

fn lint() -> Result {
    ensure_wasm_target()?;
    run(cargo().args(["fmt", "--all", "--check"]), "rustfmt (host)")?;
    run(
        cargo().args([
            "fmt",
            "--all",
            "--check",
            "--manifest-path",
            "plugins/Cargo.toml",
        ]),
        "rustfmt (plugins and SDK)",
    )?;
    run(
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "clippy (host)",
    )?;
    run(
        cargo()
            .args([
                "clippy",
                "--workspace",
                "--target",
                WASM_TARGET,
                "--manifest-path",
                "plugins/Cargo.toml",
            ])
            .args(["--target-dir", "target/wasm", "--", "-D", "warnings"])
            .env_remove("CARGO_TARGET_DIR"),
        "clippy (plugins and SDK)",
    )
}

fn bench(extra: &[String]) -> Result {
    let plugin_dir = plugins()?;
    if extra.iter().any(|a| a == "side") {
        // The side-by-side comparison runs nginx in front of a simulator.
        debian_tool(
            "nginx",
            "-v",
            "nginx-light",
            "for the side-by-side benchmark",
        )?;
    }
    // One build of the binaries: the telemetry and side-by-side rows run
    // the real gateway and simulator beside the bench. Built together,
    // they share one feature resolution (built apart, each build would
    // undo the other's).
    run(
        cargo().args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "lianqiao-gateway",
            "-p",
            "lianqiao-e2e",
            "-p",
            "lianqiao-sim",
            "--bin",
            "lianqiao",
            "--bin",
            "lianqiao-bench",
            "--bin",
            "lianqiao-sim",
        ]),
        "building the gateway, simulators and benchmarks (release)",
    )?;
    run(
        Command::new(root().join("target/release/lianqiao-bench"))
            .current_dir(root())
            .args(extra)
            .env("LIANQIAO_PLUGIN_DIR", &plugin_dir),
        "running benchmarks (release build)",
    )
}
