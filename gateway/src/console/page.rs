//! Server-rendered pages: plain HTML and a little CSS, no script. Every
//! value is escaped; a policy's id and description show on hover.

use serde_json::Value;

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
table{border-collapse:collapse;margin:0 0 1.5rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;font-size:.85rem}\
th{background:#f4f4f4;text-align:left}td.clear{background:#e8f5e9}td.masked{background:#fff8e1}\
td.withheld{background:#fce4ec}td.denied{background:#eee;color:#777}caption{text-align:left;font-weight:bold;margin:.5rem 0}";

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — Lianqiao console</title><style>{STYLE}</style></head><body><nav><a href=\"/console/matrix\">Who sees what</a> · <a href=\"/console/sources\">Sources</a></nav>{body}</body></html>",
        escape(title)
    )
}

/// The sources: one row each, from the readiness report.
pub fn sources(report: &Value, operator: &str) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut body = format!(
        "<h1>Sources</h1><p>Signed in as <b>{}</b>. The gateway is <b>{}</b>; policy <code>{}</code>, {} divisions in the registry. As JSON: <code>/console/sources.json</code>.</p>\
         <table id=\"sources\"><tr><th>source</th><th>state</th><th>breaker</th><th>checked</th><th>calls (recent)</th><th>failures</th><th>median ms</th><th>coverage</th><th>resources</th><th>plugin</th><th>sha256</th><th>limits</th></tr>",
        escape(operator),
        escape(&text(&report["status"])),
        escape(&text(&report["policy"]["version"])),
        escape(&text(&report["policy"]["registry_divisions"])),
    );
    for s in report["sources"].as_array().into_iter().flatten() {
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
            "<tr data-source=\"{name}\"><th>{name}</th><td class=\"{class}\" title=\"{error}\">{state}</td><td>{breaker}</td><td>{checked}</td><td>{calls}</td><td>{failures}</td><td>{median}</td><td>{coverage}</td><td>{entities}</td><td>{plugin}</td><td><code>{sha}</code></td><td>{memory} MiB, {deadline} ms, {rows} rows</td></tr>",
            name = escape(&text(&s["name"])),
            state = escape(&text(&s["state"])),
            error = escape(&text(&s["health"]["error"])),
            breaker = escape(&text(&s["breaker"])),
            checked = escape(&text(&s["health"]["checked_at"])),
            calls = escape(&text(&s["recent"]["calls"])),
            failures = escape(&text(&s["recent"]["failures"])),
            median = escape(&text(&s["recent"]["median_latency_ms"])),
            coverage = escape(&list(&s["coverage"])),
            entities = escape(&list(&s["entities"])),
            plugin = escape(&format!("{} {}", text(&s["plugin"]["name"]), text(&s["plugin"]["version"]))),
            sha = escape(&text(&s["plugin"]["sha256"]).chars().take(16).collect::<String>()),
            memory = escape(&text(&limits["memory_mib"])),
            deadline = escape(&text(&limits["deadline_ms"])),
            rows = escape(&text(&limits["max_rows"])),
        ));
    }
    body.push_str("</table>");
    shell("Sources", &body)
}

/// A page that only says something (sign in first, a bad parameter).
pub fn message(text: &str) -> String {
    shell(
        "Lianqiao console",
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
pub fn matrix(m: &Value, operator: &str, purposes: &[String]) -> String {
    let division = m["division"].as_str().unwrap_or("");
    let purpose = m["purpose"].as_str().unwrap_or("");
    let mut body = format!(
        "<h1>Who sees what</h1><p>Signed in as <b>{}</b>. Policy version <code>{}</code>. Each level's staff in the jurisdiction holding <code>{}</code>, asking for <code>{}</code>; hover a cell for the policies that decided it. As JSON: <code>/console/matrix.json?division={}&amp;purpose={}</code>.</p>\
         <form method=\"get\" action=\"/console/matrix\"><label>Division <input name=\"division\" value=\"{}\"></label> <label>Purpose <select name=\"purpose\">{}</select></label> <button>Show</button></form>",
        escape(operator),
        escape(m["policy_version"].as_str().unwrap_or("")),
        escape(division),
        escape(purpose),
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
            .collect::<String>()
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
    shell("Who sees what", &body)
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
