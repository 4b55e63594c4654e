//! The OpenAPI 3.1 document served at `/api/openapi.json`, generated from the code: each
//! handler carries its operation (`#[utoipa::path]`), each body type derives its schema, and
//! each module lists its operations in a `Doc`. What every operation shares is stated once
//! here, as rules applied to the generated document:
//!
//! - an operation that names an OAuth2 scope (`security(("oauth2" = ["orders:read"]))`) is
//!   open to the account token, API keys and app tokens carrying that scope; it says so in
//!   `security` and `x-required-scope`, and answers 401, 403 and 429 as problems;
//! - account-only operations (`security(("apiToken" = []))`) answer 401 and 403;
//! - a request body or query means a 400, an id in the path a 404, when the operation does
//!   not describe its own;
//! - every error response is `application/problem+json` (RFC 9457).

pub mod protocols;

use serde_json::{Map, Value, json};
use std::sync::LazyLock;
use utoipa::OpenApi;
use vitrine_platform::Scope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine",
        description = "Live-video commerce server: the seller API (account token, API keys in test and live mode, or OAuth2 apps with scopes), WHIP ingest (RFC 9725), WHEP playback. Errors are RFC 9457 problem documents (application/problem+json). Timestamps are RFC 3339 in UTC; amounts are integer minor units with an ISO 4217 currency."
    ),
    components(schemas(vitrine_core::Problem))
)]
struct Root;

/// The document, built once: the operations of every module, then the shared rules.
pub fn document() -> &'static str {
    static DOC: LazyLock<String> = LazyLock::new(|| {
        let mut doc = Root::openapi();
        for part in [
            crate::api::streams::Doc::openapi(),
            crate::api::moderation::Doc::openapi(),
            crate::api::timeline::Doc::openapi(),
            crate::api::sales::Doc::openapi(),
            crate::api::showcase::Doc::openapi(),
            crate::api::catalog::Doc::openapi(),
            crate::api::orders::Doc::openapi(),
            crate::api::auctions::Doc::openapi(),
            crate::api::account::Doc::openapi(),
            crate::api::webhooks::Doc::openapi(),
            crate::api::payouts::Doc::openapi(),
            crate::api::fx::Doc::openapi(),
            crate::oauth::Doc::openapi(),
            protocols::Doc::openapi(),
        ] {
            doc.merge(part);
        }
        let mut doc = serde_json::to_value(&doc).expect("an OpenAPI document serialises");
        apply_conventions(&mut doc);
        doc.to_string()
    });
    &DOC
}

fn problem_ref() -> Value {
    json!({ "$ref": "#/components/responses/Problem" })
}

fn problem(description: String) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn security_schemes() -> Value {
    let scopes: Map<String, Value> = Scope::ALL
        .into_iter()
        .map(|s| (s.as_str().to_owned(), Value::from(s.describe())))
        .collect();
    json!({
        "apiToken": {
            "type": "http", "scheme": "bearer",
            "description": "A seller's account token (`vt_...`, from `vitrine sellers create`): every scope, and the only credential that manages apps, API keys and grants (besides the portal's own session)."
        },
        "streamKey": {
            "type": "http", "scheme": "bearer",
            "description": "A stream's key, shown once when the stream is created."
        },
        "buyerToken": {
            "type": "http", "scheme": "bearer",
            "description": "A guest buyer's session token (POST /api/v1/buyers)."
        },
        "apiKey": {
            "type": "http", "scheme": "bearer",
            "description": "A seller's API key (`vk_live_...` on the seller's data, `vk_test_...` on the seller's sandbox account), limited to the scopes it was created with."
        },
        "oauth2": {
            "type": "oauth2",
            "description": "An app's access token (`vat_...`) from the authorization code flow with PKCE (S256). Metadata: /.well-known/oauth-authorization-server (RFC 8414).",
            "flows": { "authorizationCode": {
                "authorizationUrl": "/oauth/authorize",
                "tokenUrl": "/oauth/token",
                "refreshUrl": "/oauth/token",
                "scopes": scopes
            } }
        }
    })
}

/// The rules of the module header, applied to every operation.
fn apply_conventions(doc: &mut Value) {
    let components = &mut doc["components"];
    components["securitySchemes"] = security_schemes();
    components["responses"] = json!({ "Problem": problem("An error".to_owned()) });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if matches!(method.as_str(), "parameters" | "summary" | "description") {
                continue;
            }
            apply_to_operation(path, op);
        }
    }
}

fn apply_to_operation(path: &str, op: &mut Value) {
    let scope = op["security"].as_array().and_then(|alternatives| {
        alternatives.iter().find_map(|a| {
            a.get("oauth2")
                .and_then(|s| s.get(0))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    });
    let account_only = op["security"].as_array().is_some_and(|alternatives| {
        alternatives.len() == 1 && alternatives[0].get("apiToken").is_some()
    });
    let has_query = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let needs_400 = op.get("requestBody").is_some() || has_query;
    let needs_404 = path.contains('{') && path.starts_with("/api/");

    let responses = op["responses"]
        .as_object_mut()
        .expect("every operation has responses");
    for response in responses.values_mut() {
        make_problem_content(response);
    }
    let mut add = |status: &str, response: Value| {
        responses.entry(status.to_owned()).or_insert(response);
    };
    if needs_400 {
        add("400", problem_ref());
    }
    if needs_404 {
        add("404", problem_ref());
    }
    if let Some(scope) = &scope {
        add("401", problem_ref());
        add(
            "403",
            problem(format!("The credential lacks the {scope} scope")),
        );
        add(
            "429",
            problem("Over the caller's rate limit; see Retry-After".to_owned()),
        );
    }
    if account_only {
        add("401", problem_ref());
        add(
            "403",
            problem("Only the account token or the portal session may do this".to_owned()),
        );
        add(
            "429",
            problem("Over the caller's rate limit; see Retry-After".to_owned()),
        );
    }
    if let Some(scope) = scope {
        let mut security = vec![
            json!({ "apiToken": [] }),
            json!({ "apiKey": [scope] }),
            json!({ "oauth2": [scope] }),
        ];
        // Other ways in the operation names itself (a buyer's token for their own orders).
        for alternative in op["security"].as_array().into_iter().flatten() {
            let named = alternative.as_object().into_iter().flat_map(|o| o.keys());
            if named
                .into_iter()
                .all(|k| !matches!(k.as_str(), "apiToken" | "apiKey" | "oauth2"))
            {
                security.push(alternative.clone());
            }
        }
        op["security"] = Value::Array(security);
        op["x-required-scope"] = Value::from(scope);
    }
}

/// An error body documented as `Problem` is served as `application/problem+json`.
fn make_problem_content(response: &mut Value) {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    let is_problem = content
        .get("application/json")
        .is_some_and(|c| c["schema"]["$ref"] == "#/components/schemas/Problem");
    if is_problem && let Some(c) = content.remove("application/json") {
        content.insert("application/problem+json".to_owned(), c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_operations_open_to_every_credential_with_the_scope() {
        let mut op = json!({
            "security": [{ "oauth2": ["orders:read"] }, { "buyerToken": [] }],
            "parameters": [{ "name": "limit", "in": "query" }],
            "responses": { "200": { "description": "ok" } }
        });
        apply_to_operation("/api/v1/orders", &mut op);
        assert_eq!(
            op["security"],
            json!([{ "apiToken": [] }, { "apiKey": ["orders:read"] }, { "oauth2": ["orders:read"] }, { "buyerToken": [] }])
        );
        assert_eq!(op["x-required-scope"], "orders:read");
        for status in ["400", "401", "403", "429"] {
            assert!(op["responses"].get(status).is_some(), "{status}");
        }
        assert!(op["responses"].get("404").is_none());
    }

    #[test]
    fn problem_bodies_are_problem_json_and_own_descriptions_stay() {
        let mut op = json!({
            "requestBody": {},
            "responses": {
                "400": { "description": "mine", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Problem" } } } }
            }
        });
        apply_to_operation("/api/v1/products/{id}", &mut op);
        assert_eq!(op["responses"]["400"]["description"], "mine");
        assert!(op["responses"]["400"]["content"]["application/problem+json"].is_object());
        assert_eq!(op["responses"]["404"], problem_ref());
        assert!(op.get("x-required-scope").is_none());
    }
}
