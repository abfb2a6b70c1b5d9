//! API Gateway HTTP API (payload format 2.0) on localhost: route matching as the template
//! declares it, and the JSON event a Lambda function receives.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::template::Route;

/// Who an IAM-authorised route's caller is on one machine.
pub const LOCAL_IAM_CALLER: &str = "arn:aws:iam::123456789012:user/local-developer";

/// The route a request takes, with its path parameters.
pub fn match_route<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<(&'a Route, BTreeMap<String, String>)> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    routes.iter().find_map(|r| {
        if r.method != "ANY" && !r.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let pat: Vec<&str> = r.path.trim_end_matches('/').split('/').collect();
        if pat.len() != segs.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (p, s) in pat.iter().zip(&segs) {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !s.is_empty() => {
                    let decoded = percent_decode(s);
                    params.insert(name.to_owned(), decoded);
                }
                Some(_) => return None,
                None if p == s => {}
                None => return None,
            }
        }
        Some((r, params))
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// What an HTTP request carries, as the local server or a test has it.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub source_ip: &'a str,
}

/// The payload-2.0 event API Gateway sends for `req` on `route`.
pub fn http_api_event(route: &Route, path_params: &BTreeMap<String, String>, req: &HttpRequest<'_>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (k, v) in &req.headers {
        let k = k.to_ascii_lowercase();
        if k == "cookie" {
            cookies.extend(v.split(';').map(|c| Value::String(c.trim().to_owned())));
            continue;
        }
        // API Gateway joins repeated headers with commas.
        match headers.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                headers.insert(k, Value::String(v.clone()));
            }
        }
    }
    let mut query = Map::new();
    for pair in req.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.insert(percent_decode(k), Value::String(percent_decode(&v.replace('+', " "))));
    }
    let now = chrono::Utc::now();
    let route_key = format!("{} {}", route.method, route.path);
    let ua = headers
        .get("user-agent")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.path,
        "rawQueryString": req.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": req.method, "path": req.path, "protocol": "HTTP/1.1", "sourceIp": req.source_ip, "userAgent": ua},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis()
        },
        "isBase64Encoded": true,
        "body": base64::engine::general_purpose::STANDARD.encode(req.body)
    });
    if !path_params.is_empty() {
        event["pathParameters"] = json!(path_params);
    }
    if route.iam {
        // Locally nobody signs requests; the caller is named so moves are still attributed.
        event["requestContext"]["authorizer"] =
            json!({"iam": {"userArn": LOCAL_IAM_CALLER, "accountId": "123456789012"}});
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![
            Route {
                function: "Intake".into(),
                method: "POST".into(),
                path: "/forms/{formId}/submissions".into(),
                iam: false,
            },
            Route {
                function: "Intake".into(),
                method: "OPTIONS".into(),
                path: "/forms/{formId}/submissions".into(),
                iam: false,
            },
        ]
    }

    #[test]
    fn matches_with_params() {
        let r = routes();
        let (route, params) = match_route(&r, "POST", "/forms/demo%2Dx/submissions").unwrap();
        assert_eq!(route.method, "POST");
        assert_eq!(params["formId"], "demo-x");
        assert!(match_route(&r, "GET", "/forms/demo/submissions").is_none());
        assert!(match_route(&r, "POST", "/forms//submissions").is_none());
        assert!(match_route(&r, "POST", "/forms/demo").is_none());
    }

    #[test]
    fn event_is_what_lambda_http_reads() {
        let r = routes();
        let (route, params) = match_route(&r, "POST", "/forms/demo/submissions").unwrap();
        let req = HttpRequest {
            method: "POST",
            path: "/forms/demo/submissions",
            query: "a=1",
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), "t".into()),
            ],
            body: br#"{"email":"a@b.co"}"#,
            source_ip: "192.0.2.1",
        };
        let event = http_api_event(route, &params, &req);
        let parsed = lambda_http::request::from_str(&event.to_string()).unwrap();
        use lambda_http::RequestExt;
        assert_eq!(parsed.method(), "POST");
        assert_eq!(
            parsed.path_parameters_ref().and_then(|p| p.first("formId")),
            Some("demo")
        );
        assert_eq!(parsed.body().as_ref(), req.body);
        assert_eq!(parsed.headers()["content-type"], "application/json");
    }
}
