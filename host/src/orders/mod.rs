//! Orders: placement through the tenant's policy hooks, processing, cancellation, and
//! status (JSON and server-sent events).

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
