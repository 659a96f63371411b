//! `GET /openapi.json`: an OpenAPI 3.1 description of the `/api/v1` API, generated from the
//! route table itself ([`crate::http::api_routes`]'s [`RouteRule`]s: every route, its method and
//! its roles), with request and response schemas derived (`utoipa`) from the handlers' types
//! where this module knows them. Public, like `/healthz`: it describes the API's shape and
//! holds no data.

use utoipa::IntoParams;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, Required};

use super::alerts_api::{
    AlertListPage, AlertListParams, FollowUpDoneRequest, NoteRequest, ResolveRequest, ResponderCallRequest,
    StreamParams,
};
use super::api::{AuditQuery, LoginRequest, LoginResponse, NewUser, PasswordChange, UserView};
use super::{Allowed, RouteRule};

/// What this module knows of a route beyond its rule.
#[derive(Default)]
struct Known {
    summary: &'static str,
    request: Option<&'static str>,
    response: Option<&'static str>,
    query: Vec<utoipa::openapi::path::Parameter>,
    event_stream: bool,
}

fn known(method: &str, path: &str) -> Known {
    let query = || Some(ParameterIn::Query);
    let k = |summary, request, response| Known {
        summary,
        request,
        response,
        ..Known::default()
    };
    match (method, path.trim_start_matches(super::guard::API_PREFIX)) {
        ("POST", "/login") => k("Log in: a bearer token", Some("LoginRequest"), Some("LoginResponse")),
        ("POST", "/logout") => k("Revoke the presented token", None, None),
        ("POST", "/password") => k("Change the caller's password", Some("PasswordChange"), None),
        ("GET", "/me") => k("The caller", None, None),
        ("GET", "/users") => k("Every user", None, Some("UserView")),
        ("POST", "/users") => k("Create a user with a one-time password", Some("NewUser"), None),
        ("GET", "/audit") => Known {
            query: AuditQuery::into_params(query),
            ..k("One resident's audit trail (audited)", None, None)
        },
        ("GET", "/audit/verify") => k("Check the audit chain", None, None),
        ("GET", "/alerts") => Known {
            query: AlertListParams::into_params(query),
            ..k("One page of alerts", None, Some("AlertListPage"))
        },
        ("GET", "/alerts/stream") => Known {
            query: StreamParams::into_params(query),
            event_stream: true,
            ..k(
                "Every alert change as Server-Sent Events (Last-Event-ID resumes)",
                None,
                None,
            )
        },
        ("GET", "/alerts/{id}") => k("One alert with its transitions and notes", None, None),
        ("POST", "/alerts/{id}/acknowledge") => k("Acknowledge an alert (audited)", None, None),
        ("POST", "/alerts/{id}/notes") => k("Add a note to an alert (audited)", Some("NoteRequest"), None),
        ("POST", "/alerts/{id}/resolve") => k(
            "Resolve an alert with an outcome (audited)",
            Some("ResolveRequest"),
            None,
        ),
        ("POST", "/alerts/{id}/responder-calls") => k(
            "Record a call to one of the resident's responders (audited)",
            Some("ResponderCallRequest"),
            None,
        ),
        ("POST", "/alerts/{id}/follow-up-done") => k(
            "Mark an alert's follow-up done, resolved or not (audited)",
            Some("FollowUpDoneRequest"),
            None,
        ),
        _ => Known::default(),
    }
}

fn http_method(method: &axum::http::Method) -> Option<HttpMethod> {
    Some(match method.as_str() {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        "HEAD" => HttpMethod::Head,
        "OPTIONS" => HttpMethod::Options,
        "TRACE" => HttpMethod::Trace,
        _ => return None,
    })
}

fn json_ref(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build()
}

/// The document for these routes.
pub fn document(rules: &[RouteRule]) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for rule in rules {
        let Some(method) = http_method(&rule.method) else {
            continue;
        };
        let known = known(rule.method.as_str(), &rule.path);
        let mut operation = OperationBuilder::new()
            .operation_id(Some(format!("{} {}", rule.method, rule.path)))
            .summary((!known.summary.is_empty()).then_some(known.summary));
        match rule.allowed {
            Allowed::Public => {
                operation = operation.description(Some("Public: no token."));
            }
            Allowed::Roles(roles) => {
                let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
                operation = operation
                    .description(Some(format!("Roles: {}.", names.join(", "))))
                    .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                    .response(
                        "401",
                        ResponseBuilder::new().description("no, invalid, expired or revoked token"),
                    )
                    .response(
                        "403",
                        ResponseBuilder::new().description("wrong role, or the one-time password must be changed"),
                    );
            }
        }
        for segment in rule.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True),
                );
            }
        }
        for parameter in known.query {
            operation = operation.parameter(parameter);
        }
        if let Some(request) = known.request {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", json_ref(request))
                    .build(),
            ));
        }
        let ok = ResponseBuilder::new().description("success");
        let ok = match (known.response, known.event_stream) {
            (_, true) => ok.content("text/event-stream", ContentBuilder::new().build()),
            (Some(schema), false) => ok.content("application/json", json_ref(schema)),
            (None, false) => ok.content("application/json", ContentBuilder::new().build()),
        };
        operation = operation
            .response("200", ok)
            .response("400", ResponseBuilder::new().description("bad input: {\"error\": ...}"))
            .response("503", ResponseBuilder::new().description("the store is unavailable"));
        paths = paths.path(rule.path.clone(), PathItem::new(method, operation));
    }
    let components = ComponentsBuilder::new()
        .schema_from::<LoginRequest>()
        .schema_from::<LoginResponse>()
        .schema_from::<PasswordChange>()
        .schema_from::<NewUser>()
        .schema_from::<UserView>()
        .schema_from::<AlertListPage>()
        .schema_from::<NoteRequest>()
        .schema_from::<ResolveRequest>()
        .schema_from::<ResponderCallRequest>()
        .schema_from::<FollowUpDoneRequest>()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tec-gateway API")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}
