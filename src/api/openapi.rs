//! The OpenAPI document: collected from the handlers' annotations as the router is built,
//! so it lists exactly the routes the router serves.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorEnvelope};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "upconfirm",
        description = "Finishes presigned S3 uploads: verify, hash, deduplicate, record. Speaks the Mixpeek bucket-uploads API."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorEnvelope, ErrorBody)),
    tags(
        (name = "buckets"), (name = "uploads"), (name = "batches"), (name = "objects"), (name = "tasks")
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer sk_...` on every route.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
