//! Server-rendered pages: plain HTML and a little CSS, no script. Every
//! value is escaped; a policy's id and description show on hover. Forms
//! that change something carry the session's token (`csrf`).

use serde_json::Value;

use super::change::Preview;
use super::session::{AUDITOR_ROLE, CONSOLE_ROLE, Session};

/// Text for HTML (element content and attribute values).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\
nav{margin:0 0 1rem;padding:0 0 .5rem;border-bottom:1px solid #ddd}nav form{display:inline}\
table{border-collapse:collapse;margin:0 0 1.5rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;font-size:.85rem;vertical-align:top}\
th{background:#f4f4f4;text-align:left}td.clear{background:#e8f5e9}td.masked{background:#fff8e1}\
td.withheld{background:#fce4ec}td.denied{background:#eee;color:#777}caption{text-align:left;font-weight:bold;margin:.5rem 0}\
.ok{color:#1b5e20}.bad{color:#b71c1c}textarea{width:100%;font-family:monospace;font-size:.8rem}\
td.gain{background:#e8f5e9}td.loss{background:#fce4ec}code{font-size:.85rem}td code{word-break:break-all}";

fn shell(title: &str, session: Option<&Session>, body: &str) -> String {
    let nav = match session {
        Some(s) => {
            let mut links = Vec::new();
            if s.has_role(CONSOLE_ROLE) {
                links.push("<a href=\"/console/matrix\">Who sees what</a>");
                links.push("<a href=\"/console/change\">Change preview</a>");
                links.push("<a href=\"/console/sources\">Sources</a>");
                links.push("<a href=\"/console/outbox\">Outbox</a>");
            }
            if s.has_role(AUDITOR_ROLE) {
                links.push("<a href=\"/console/audit\">Audit</a>");
            }
            format!(
                "<nav>{} · signed in as <b>{}</b> <form method=\"post\" action=\"/console/session/end\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form></nav>",
                links.join(" · "),
                escape(&s.principal.id),
                escape(&s.csrf)
            )
        }
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — Lianqiao console</title><style>{STYLE}</style></head><body>{nav}{body}</body></html>",
        escape(title)
    )
}

/// The sign-in form (and why the visitor is here, if a page sent them).
pub fn sign_in(why: Option<&str>) -> String {
    let why = why
        .map(|w| format!("<p class=\"bad\">{}</p>", escape(w)))
        .unwrap_or_default();
    shell(
        "Sign in",
        None,
        &format!(
            "<h1>Lianqiao console</h1>{why}<p>For operators (role <code>{CONSOLE_ROLE}</code>) and auditors (role <code>{AUDITOR_ROLE}</code>). Paste your token; the session lasts 30 minutes and the browser never keeps the token.</p>\
             <form id=\"sign-in\" method=\"post\" action=\"/console/session\"><label>Token <input type=\"password\" name=\"token\" size=\"60\" autocomplete=\"off\"></label> <button type=\"submit\">Sign in</button></form>"
        ),
    )
}

/// A small latency chart of a source's recent calls (inline SVG, oldest
/// left): a bar per call, failures red.
fn chart(calls: &Value) -> String {
    let calls: Vec<(f64, bool)> = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["latency_ms"].as_f64().unwrap_or(0.0),
                c["failed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    if calls.is_empty() {
        return "no calls yet".into();
    }
    let (w, h, bar) = (192.0, 32.0, 3.0);
    let max = calls.iter().map(|(l, _)| *l).fold(1.0_f64, f64::max);
    let bars: String = calls
        .iter()
        .enumerate()
        .map(|(i, (l, failed))| {
            let height = (l / max * (h - 2.0)).max(1.0);
            format!(
                "<rect x=\"{:.0}\" y=\"{:.1}\" width=\"{bar}\" height=\"{height:.1}\" fill=\"{}\"><title>{l} ms{}</title></rect>",
                i as f64 * bar,
                h - height,
                if *failed { "#c62828" } else { "#1565c0" },
                if *failed { ", failed" } else { "" }
            )
        })
        .collect();
    format!(
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"latency of the last {} calls, up to {max} ms\">{bars}</svg><br><small>max {max} ms</small>",
        calls.len()
    )
}

/// The sources: one row each, from the readiness report.
pub fn sources(report: &Value, session: &Session) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let summary = &report["summary"];
    let mut body = format!(
        "<h1>Sources</h1><p>The gateway is <b>{}</b>: {} sources, {} up, {} down, {} not checked yet; policy <code>{}</code>; {} divisions in the registry, {}. Sources that need attention come first, then each city's. As JSON: <code>/console/sources.json</code>.</p>\
         <table id=\"sources\"><tr><th>source</th><th>state</th><th>breaker</th><th>checked</th><th>calls (recent)</th><th>failures</th><th>median ms</th><th>latency (recent calls)</th><th>coverage</th><th>resources</th><th>plugin</th><th>sha256</th><th>limits</th></tr>",
        escape(&text(&report["status"])),
        escape(&text(&summary["sources"])),
        escape(&text(&summary["up"])),
        escape(&text(&summary["down"])),
        escape(&text(&summary["unchecked"])),
        escape(&text(&report["policy"]["version"])),
        escape(&text(&report["policy"]["registry_divisions"])),
        match report["policy"]["registry_refreshed_at"].as_str() {
            Some(at) if report["policy"]["registry_complete"] == false => format!(
                "last fetched {} (incomplete: a source did not answer)",
                escape(at)
            ),
            Some(at) => format!("last fetched {}", escape(at)),
            None => "not fetched since the start (policy.registry_refresh_s)".to_string(),
        },
    );
    let cities: Vec<&Value> = summary["cities"].as_array().into_iter().flatten().collect();
    let mut group: Option<String> = None;
    for s in report["sources"].as_array().into_iter().flatten() {
        // A heading per group: those needing attention, then each city.
        let attention = s["state"] != "up" || s["breaker"] != "closed";
        let this = if attention {
            "attention".to_string()
        } else {
            text(&s["city"])
        };
        if group.as_ref() != Some(&this) {
            let heading = if attention {
                "Needs attention (down, not checked yet, or its breaker not closed)".to_string()
            } else {
                let city = cities.iter().find(|c| c["city"] == s["city"]);
                match city {
                    Some(c) => format!(
                        "{}: {} sources, {} up",
                        if this.is_empty() { "the region" } else { &this },
                        text(&c["sources"]),
                        text(&c["up"])
                    ),
                    None => "the region".to_string(),
                }
            };
            body.push_str(&format!(
                "<tr class=\"group\"><th colspan=\"13\">{}</th></tr>",
                escape(&heading)
            ));
            group = Some(this);
        }
        let class = match s["state"].as_str() {
            Some("up") => "clear",
            Some("down") => "withheld",
            _ => "masked",
        };
        let list = |v: &Value| {
            v.as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let limits = &s["limits"];
        body.push_str(&format!(
            "<tr data-source=\"{name}\"><th>{name}</th><td class=\"{class}\" title=\"{error}\">{state}</td><td>{breaker}</td><td>{checked}</td><td>{calls}</td><td>{failures}</td><td>{median}</td><td>{chart}</td><td>{coverage}</td><td>{entities}</td><td>{plugin}</td><td><code>{sha}</code></td><td>{memory} MiB, {deadline} ms, {rows} rows, {instances} instances</td></tr>",
            name = escape(&text(&s["name"])),
            state = escape(&text(&s["state"])),
            error = escape(&text(&s["health"]["error"])),
            breaker = escape(&text(&s["breaker"])),
            checked = escape(&text(&s["health"]["checked_at"])),
            calls = escape(&text(&s["recent"]["calls"])),
            failures = escape(&text(&s["recent"]["failures"])),
            median = escape(&text(&s["recent"]["median_latency_ms"])),
            chart = chart(&s["recent_calls"]),
            coverage = escape(&list(&s["coverage"])),
            entities = escape(&list(&s["entities"])),
            plugin = escape(&format!("{} {}", text(&s["plugin"]["name"]), text(&s["plugin"]["version"]))),
            sha = escape(&text(&s["plugin"]["sha256"]).chars().take(16).collect::<String>()),
            memory = escape(&text(&limits["memory_mib"])),
            deadline = escape(&text(&limits["deadline_ms"])),
            rows = escape(&text(&limits["max_rows"])),
            instances = escape(&text(&limits["instances"])),
        ));
    }
    body.push_str("</table>");
    shell("Sources", Some(session), &body)
}

/// What the change page shows.
pub struct ChangeView<'a> {
    pub session: &'a Session,
    pub division: &'a str,
    /// The file in the editor, and its text (the draft's, else the file's).
    pub editing: &'a str,
    pub text: &'a str,
    /// Every file a change may touch.
    pub files: Vec<String>,
    pub preview: &'a Preview,
    /// Files changed on disk since they were drafted.
    pub conflicts: Vec<String>,
}

/// The change preview: the editor, the draft's files, validation, the
/// test tables, the diff of who sees what, and "apply".
pub fn change(v: &ChangeView) -> String {
    let csrf = escape(&v.session.csrf);
    let p = v.preview;
    let files: String = v
        .files
        .iter()
        .chain(p.files.iter().filter(|f| !v.files.contains(f)))
        .map(|f| {
            let drafted = if p.files.contains(f) {
                " (drafted)"
            } else {
                ""
            };
            format!(
                "<li><a href=\"/console/change?edit={0}\">{1}</a>{drafted}</li>",
                escape(&f.replace('/', "%2F")),
                escape(f)
            )
        })
        .collect();
    let editor = format!(
        "<h2>Edit</h2><ul id=\"files\">{files}</ul>\
         <form id=\"edit\" method=\"post\" action=\"/console/change/draft\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"file\" value=\"{file}\">\
         <label>Editing <code>{file}</code> (or a new <code>policy/&lt;name&gt;.cedar</code>: <a href=\"/console/change?edit=policy%2Fproposed.cedar\">start one</a>)<br><textarea name=\"text\" rows=\"12\" spellcheck=\"false\">{text}</textarea></label><br><button type=\"submit\" id=\"preview\">Preview this change</button></form>",
        file = escape(v.editing),
        text = escape(v.text),
    );
    let mut body = format!(
        "<h1>Change preview</h1><p>Edit a policy file, the field classes or a test table; nothing changes live until you apply. The preview validates the proposed files, runs every test table and shows what each level gains or loses (jurisdiction holding <code>{}</code>, every purpose). As JSON: <code>/console/change.json</code>.</p>",
        escape(v.division)
    );
    if p.files.is_empty() {
        body.push_str("<p id=\"verdict\">No draft yet.</p>");
        body.push_str(&editor);
        return shell("Change preview", Some(v.session), &body);
    }
    body.push_str(&format!(
        "<h2>Draft</h2><p>Changes <code>{}</code>. Policy version <code>{}</code> → <code>{}</code>.</p>",
        escape(&p.files.join(", ")),
        escape(&p.version_before),
        escape(p.version_after.as_deref().unwrap_or("—"))
    ));
    if !v.conflicts.is_empty() {
        body.push_str(&format!(
            "<p class=\"bad\">Changed on disk since you drafted: <code>{}</code>. Applying is refused until you draft them again.</p>",
            escape(&v.conflicts.join(", "))
        ));
    }
    if !p.problems.is_empty() {
        body.push_str("<h2>Validation</h2><ul id=\"problems\" class=\"bad\">");
        for problem in &p.problems {
            body.push_str(&format!("<li><pre>{}</pre></li>", escape(problem)));
        }
        body.push_str("</ul>");
    } else {
        let failed: Vec<_> = p.failed_tests().collect();
        body.push_str(&format!(
            "<h2>Tests</h2><p id=\"tests\" class=\"{}\">{} cases, {} failed.</p>",
            if failed.is_empty() { "ok" } else { "bad" },
            p.tests.len(),
            failed.len()
        ));
        if !failed.is_empty() {
            body.push_str("<ul id=\"failed-tests\">");
            for t in failed {
                body.push_str(&format!(
                    "<li><b>{}</b> ({}): {}</li>",
                    escape(&t.name),
                    escape(&t.file),
                    escape(&t.problems.join("; "))
                ));
            }
            body.push_str("</ul>");
        }
        body.push_str(&format!(
            "<h2>Who sees what: {} cells change</h2>",
            p.changes.len()
        ));
        if !p.changes.is_empty() {
            body.push_str("<table id=\"diff\"><tr><th>purpose</th><th>level</th><th>resource</th><th>field</th><th>now</th><th>with the change</th></tr>");
            for c in &p.changes {
                let rank = |w: &str| match w.split(' ').next().unwrap_or("") {
                    "clear" | "allowed" => 2,
                    "masked" => 1,
                    _ => 0,
                };
                let class = if rank(&c.after) > rank(&c.before) {
                    "gain"
                } else {
                    "loss"
                };
                body.push_str(&format!(
                    "<tr class=\"change\" data-level=\"{level}\" data-resource=\"{resource}\" data-field=\"{field}\" data-purpose=\"{purpose}\"><td>{purpose}</td><td>{level}</td><td>{resource}</td><td>{field_or}</td><td>{before}</td><td class=\"{class}\">{after}</td></tr>",
                    purpose = escape(&c.purpose),
                    level = escape(&c.level),
                    resource = escape(&c.resource),
                    field = escape(&c.field),
                    field_or = if c.field.is_empty() { "(access)".to_string() } else { escape(&c.field) },
                    before = escape(&c.before),
                    after = escape(&c.after),
                ));
            }
            body.push_str("</table>");
        }
    }
    if p.applicable() && v.conflicts.is_empty() {
        body.push_str(&format!(
            "<form id=\"apply\" method=\"post\" action=\"/console/change/apply\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Apply: write the files and reload</button></form>"
        ));
    } else {
        body.push_str("<p id=\"verdict\" class=\"bad\">Cannot be applied until the problems above are fixed.</p>");
    }
    body.push_str(&format!(
        "<form id=\"discard\" method=\"post\" action=\"/console/change/discard\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Discard the draft</button></form>"
    ));
    body.push_str(&editor);
    shell("Change preview", Some(v.session), &body)
}

/// After an apply.
pub fn applied(files: &[String], version: &str) -> String {
    shell(
        "Applied",
        None,
        &format!(
            "<h1>Applied</h1><p id=\"applied\">Wrote <code>{}</code> and reloaded: the gateway now serves policy version <code>{}</code>. The change is in the audit trail.</p><p><a href=\"/console/matrix\">Who sees what</a></p>",
            escape(&files.join(", ")),
            escape(version)
        ),
    )
}

/// The audit search: filters, the chain's verification, the records.
pub fn audit(
    session: &Session,
    search: &super::audit::Search,
    raw_query: &str,
    rows: &[Value],
    verified: &Value,
) -> String {
    let input = |name: &str, value: &Option<String>, hint: &str| {
        format!(
            "<label>{name} <input name=\"{name}\" value=\"{}\" placeholder=\"{hint}\"></label> ",
            escape(value.as_deref().unwrap_or(""))
        )
    };
    let whole = format!(
        "The whole chain was verified at {} (in {} ms); records written since are verified as they are read.",
        escape(verified["verified_in_full"]["at"].as_str().unwrap_or("")),
        verified["verified_in_full"]["took_ms"]
    );
    let verification = if verified["ok"] == true {
        format!(
            "<p id=\"verification\" class=\"ok\">Chain <code>{}</code> verifies: {} records, each hash recomputed. {whole}</p>",
            escape(verified["chain"].as_str().unwrap_or("")),
            verified["records"]
        )
    } else {
        format!(
            "<p id=\"verification\" class=\"bad\">{} (first broken record: {}). {whole}</p>",
            escape(verified["message"].as_str().unwrap_or("")),
            verified["first_broken"]
        )
    };
    let verification = format!(
        "{verification}<form id=\"verify\" method=\"post\" action=\"/console/audit/verify\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Verify the whole chain now</button></form>",
        escape(&session.csrf)
    );
    let mut body = format!(
        "<h1>Audit</h1>{verification}<form id=\"search\" method=\"get\" action=\"/console/audit\">{}{}{}{}{}<label>limit <input name=\"limit\" value=\"{}\" size=\"4\"></label> <button type=\"submit\">Search</button></form>\
         <p>{} records, newest first. This search is itself in the audit trail. <a id=\"csv\" href=\"/console/audit.csv?{}\">Export as CSV</a> · as JSON: <code>/console/audit.json</code></p>\
         <table id=\"records\"><tr><th>seq</th><th>at</th><th>principal</th><th>level</th><th>division</th><th>purpose</th><th>request</th><th>scope</th><th>rows</th><th>decision</th><th>status</th></tr>",
        input("principal", &search.principal, "any"),
        input("division", &search.division, "150103"),
        input("resource", &search.resource, "members"),
        input("since", &search.since, "2026-12-01"),
        input("until", &search.until, "2026-12-31T00:00:00Z"),
        search.limit,
        rows.len(),
        escape(raw_query),
    );
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for r in rows {
        let route = text(&r["route"]).replace("{resource}", &text(&r["resource"]));
        let request = format!("{} {route}?{}", text(&r["method"]), text(&r["query"]));
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&text(&r["seq"])),
            escape(&text(&r["at"])),
            escape(&text(&r["principal"])),
            escape(&text(&r["level"])),
            escape(&text(&r["division"])),
            escape(&text(&r["purpose"])),
            escape(request.trim_end_matches('?')),
            escape(&text(&r["scope"])),
            escape(&text(&r["rows"])),
            escape(&text(&r["decision"])),
            escape(&text(&r["status"])),
        ));
    }
    body.push_str("</table>");
    shell("Audit", Some(session), &body)
}

/// The whistle outbox: counts per stage, then the rows.
pub fn outbox(report: &Value, session: &Session) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let stages: Vec<String> = report["stages"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(stage, n)| format!("<b>{}</b> {}", escape(stage), escape(&text(n))))
        .collect();
    let mut body = format!(
        "<h1>Whistle outbox</h1><p>Each escalation to the city (吹哨) is a row: the district record goes to <code>whistled</code> (stage <code>district</code>), the city files the linked case (<code>city</code>), the district record mirrors it (<code>link</code>), or goes back with the city's reason (<code>compensate</code>). Unfinished rows are retried with backoff by whichever gateway holds the lease. As of {}: {}. As JSON: <code>/console/outbox.json</code>.</p>\
         <table id=\"outbox\"><tr><th>row</th><th>case</th><th>division</th><th>district source</th><th>stage</th><th>attempts</th><th>next try</th><th>held</th><th>last error</th><th>city case</th><th>mirrored</th><th>created</th><th>updated</th></tr>",
        escape(&text(&report["at"])),
        if stages.is_empty() {
            "no whistles yet".to_string()
        } else {
            stages.join(", ")
        },
    );
    for r in report["rows"].as_array().into_iter().flatten() {
        let stage = text(&r["stage"]);
        let class = match stage.as_str() {
            "done" => "clear",
            "failed" => "withheld",
            _ if r["attempts"].as_i64().unwrap_or(0) > 0 => "masked",
            _ => "",
        };
        body.push_str(&format!(
            "<tr data-case=\"{case}\"><td><code>{id}</code></td><td><code>{case}</code></td><td>{division}</td><td>{source}</td><td class=\"{class}\">{stage}</td><td>{attempts}</td><td>{next}</td><td>{held}</td><td>{error}</td><td>{city}</td><td>{mirrored}</td><td>{created}</td><td>{updated}</td></tr>",
            id = escape(&text(&r["id"])),
            case = escape(&text(&r["case_id"])),
            division = escape(&text(&r["division"])),
            source = escape(&text(&r["district_source"])),
            stage = escape(&stage),
            attempts = escape(&text(&r["attempts"])),
            next = if matches!(stage.as_str(), "done" | "failed") { String::new() } else { escape(&text(&r["next_at"])) },
            held = if r["held"] == true { "yes" } else { "" },
            error = escape(&text(&r["error"])),
            city = escape(&text(&r["city_case"])),
            mirrored = if stage == "done" { escape(&text(&r["mirrored"])) } else { String::new() },
            created = escape(&text(&r["created_at"])),
            updated = escape(&text(&r["updated_at"])),
        ));
    }
    body.push_str("</table>");
    shell("Outbox", Some(session), &body)
}

/// A page that only says something (sign in first, a bad parameter).
pub fn message(text: &str) -> String {
    shell(
        "Lianqiao console",
        None,
        &format!("<h1>Lianqiao console</h1><p>{}</p>", escape(text)),
    )
}

/// The policies of a decision, for a hover title.
fn policies(value: &Value) -> String {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let id = p["id"].as_str().unwrap_or("");
            match p["description"].as_str() {
                Some(d) => format!("{id}: {d}"),
                None => id.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The matrix: one table per resource, a row per level, a column per field.
pub fn matrix(m: &Value, session: &Session, purposes: &[String]) -> String {
    let division = m["division"].as_str().unwrap_or("");
    let purpose = m["purpose"].as_str().unwrap_or("");
    let roles = m["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",");
    let mut body = format!(
        "<h1>Who sees what</h1><p>Policy version <code>{}</code>. Each level's staff in the jurisdiction holding <code>{}</code>, asking for <code>{}</code>{}; hover a cell for the policies that decided it. As JSON: <code>/console/matrix.json?division={}&amp;purpose={}</code>.</p>\
         <form method=\"get\" action=\"/console/matrix\"><label>Division <input name=\"division\" value=\"{}\"></label> <label>Purpose <select name=\"purpose\">{}</select></label> <label>Roles <input name=\"roles\" value=\"{}\" placeholder=\"none\"></label> <button type=\"submit\">Show</button></form>",
        escape(m["policy_version"].as_str().unwrap_or("")),
        escape(division),
        escape(purpose),
        if roles.is_empty() {
            String::new()
        } else {
            format!(" with roles <code>{}</code>", escape(&roles))
        },
        escape(division),
        escape(purpose),
        escape(division),
        purposes
            .iter()
            .map(|p| format!(
                "<option{}>{}</option>",
                if p == purpose { " selected" } else { "" },
                escape(p)
            ))
            .collect::<String>(),
        escape(&roles)
    );
    let levels = m["levels"].as_array().cloned().unwrap_or_default();
    let resources: Vec<String> = levels
        .first()
        .and_then(|l| l["resources"].as_array())
        .map(|r| {
            r.iter()
                .filter_map(|c| c["resource"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (i, resource) in resources.iter().enumerate() {
        // The fields, from the first level that may list the resource.
        let fields: Vec<String> = levels
            .iter()
            .find_map(|l| {
                l["resources"][i]["fields"].as_array().map(|f| {
                    f.iter()
                        .filter_map(|x| x["field"].as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        body.push_str(&format!(
            "<table id=\"{0}\"><caption>{0}</caption><tr><th>level</th><th>division</th>{1}</tr>",
            escape(resource),
            fields
                .iter()
                .map(|f| format!("<th>{}</th>", escape(f)))
                .collect::<String>()
        ));
        for level in &levels {
            let cell = &level["resources"][i];
            body.push_str(&format!(
                "<tr><th>{}</th><td>{}</td>",
                escape(level["level"].as_str().unwrap_or("")),
                escape(level["division"].as_str().unwrap_or(""))
            ));
            if cell["decision"] != "allow" {
                body.push_str(&format!(
                    "<td class=\"denied\" colspan=\"{}\" title=\"{}\">denied</td>",
                    fields.len().max(1),
                    escape(&format!(
                        "{}\n{}",
                        cell["reason"].as_str().unwrap_or(""),
                        policies(&cell["policies"])
                    ))
                ));
            } else {
                for f in &fields {
                    let found = cell["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|x| x["field"] == f.as_str());
                    let (class, text, title) = match found {
                        Some(x) => {
                            let shown = x["as"].as_str().unwrap_or("withheld");
                            let text = match x["mask"].as_str() {
                                Some(mask) => format!("{shown} ({mask})"),
                                None => shown.to_string(),
                            };
                            (shown.to_string(), text, policies(&x["policies"]))
                        }
                        None => ("withheld".into(), "withheld".into(), String::new()),
                    };
                    body.push_str(&format!(
                        "<td class=\"{}\" data-field=\"{}\" title=\"{}\">{}</td>",
                        escape(&class),
                        escape(f),
                        escape(&title),
                        escape(&text)
                    ));
                }
            }
            body.push_str("</tr>");
        }
        body.push_str("</table>");
    }
    shell("Who sees what", Some(session), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = message("<script>alert(1)</script>");
        assert!(!page.contains("<script>"), "{page}");
    }
}
