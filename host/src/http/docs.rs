//! The OpenAPI 3.1 description, generated from the handlers' annotations, and the Swagger
//! UI served from files compiled into the binary (no CDN: the page works offline).

use axum::Router;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderhost",
        description = "E-commerce ordering service: server-side pricing, VIP-first processing, \
                       merchant rules as WebAssembly components. Errors are \
                       `{\"error\":{\"code\",\"message\",\"details\"}}`.",
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Registration, sessions, profile"),
        (name = "users", description = "Tenant user administration"),
        (name = "tenants", description = "Platform tenants (operators)"),
        (name = "health", description = "Liveness and readiness"),
        (name = "catalog", description = "Products, stock and the public showcase"),
        (name = "orders", description = "Placing, following and cancelling orders"),
        (name = "policy", description = "The WebAssembly policy runtime (operators, tenant admins)"),
        (name = "components", description = "The component registry: upload, list, inspect, delete; quotas"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::ACCESS_COOKIE))),
        );
    }
}

/// The document the module routers add their paths to.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json` and the UI under `/api/docs`.
pub fn router(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    // The validator badge would make the browser call an outside host: switch it off.
    let config = Config::from("/api/openapi.json").validator_url("none");
    Router::new().merge(
        SwaggerUi::new("/api/docs")
            .url("/api/openapi.json", openapi)
            .config(config),
    )
}
