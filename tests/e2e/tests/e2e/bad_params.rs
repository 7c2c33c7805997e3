//! Bad query parameters: 400, a stable code and a message that says what
//! to fix; nothing reaches a source.

use lianqiao_e2e::ConfigDir;

#[tokio::test]
async fn bad_parameters_are_400_with_code_and_fix() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let cases = [
        (
            "/v1/grids?limit=5",
            "missing_parameter",
            "`division=<code>` is required",
        ),
        (
            "/v1/grids?division=150103&limit=0",
            "invalid_parameter",
            "from 1 to 1000",
        ),
        (
            "/v1/grids?division=150103&limit=ten",
            "invalid_parameter",
            "got `ten`",
        ),
        (
            "/v1/grids?division=150103'%20OR%201=1",
            "invalid_parameter",
            "division code",
        ),
        (
            "/v1/grids?division=150103&colour=red",
            "unknown_field",
            "its fields are: id, code, name",
        ),
        (
            "/v1/grids?division=150103&tier=huge",
            "invalid_parameter",
            "big, medium, small, micro",
        ),
        (
            "/v1/grids?division=150103&households=many",
            "invalid_parameter",
            "takes an integer",
        ),
        (
            "/v1/grids?division=150103&households[gt]=3",
            "invalid_parameter",
            "unknown operator `gt`",
        ),
        (
            "/v1/grids?division=150103&strict=maybe",
            "invalid_parameter",
            "true or false",
        ),
        (
            "/v1/grids?division=150103&fields=name,colour",
            "unknown_field",
            "no field `colour`",
        ),
        (
            "/v1/grids?division=150103&cursor=nonsense",
            "bad_cursor",
            "malformed",
        ),
        ("/v1/divisions", "missing_parameter", "parent=<code>"),
        (
            "/v1/divisions/15%25",
            "invalid_parameter",
            "not a unified division code",
        ),
        (
            "/v1/grids?division=150103&name=",
            "invalid_parameter",
            "leave it out",
        ),
        (
            "/v1/grids?division=150103&cursor=",
            "invalid_parameter",
            "leave it out",
        ),
        ("/v1/nowhere", "not_found", "no resource `nowhere`"),
        ("/v2/grids", "not_found", "no such route"),
    ];
    for (path, code, fix) in cases {
        let (status, body) = gw.get(path).await;
        let expected = if code == "not_found" { 404 } else { 400 };
        assert_eq!(status.as_u16(), expected, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(fix),
            "{path}: message `{message}` should contain `{fix}`"
        );
        assert!(
            body.get("sources").is_none(),
            "{path}: no source should be called"
        );
    }
}
