//! Catalog routes: admin product and stock management, public showcase.

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
