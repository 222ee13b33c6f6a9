//! The dashboard's static files, embedded in the binary (`include_bytes!`), so `intake serve`
//! needs no asset directory and no build step. The vendored libraries keep their version in
//! their file name (a new version is a new URL, so the long cache lifetime is safe) and their
//! licence beside them in `crates/server/assets/vendor/`; docs/dashboard.md lists them.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "htmx-2.0.11.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx-2.0.11.min.js"),
    },
    Asset {
        name: "uPlot-1.6.32.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uPlot-1.6.32.iife.min.js"),
    },
    Asset {
        name: "uPlot-1.6.32.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uPlot-1.6.32.min.css"),
    },
];

/// `GET /assets/{name}`: open to anyone (the login page needs its style), and holding
/// nothing of this server's data.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // Our own files change with the binary, so they are revalidated; vendored ones carry
    // their version in their name.
    let cache = if name.starts_with("app.") {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.bytes,
    )
        .into_response()
}
