//! The dashboard door, `/`: server-rendered pages for people, behind a session cookie.
//!
//! **Rule of this room:** like every door it only translates. A page reads through the same
//! functions the admin API's handlers call (`api::flows::read`, `api::alerts::read`,
//! `api::silences::create_silence`, `api::recoveries::create_job`, …) with the session's
//! [`Scope`](crate::api::Scope), so a page shows exactly what the API would answer to the
//! same token, and a tenant session is filtered by the same rules; it starts no task and
//! decides nothing a duty decides. It may import `state`, `duties` and `api` (for `Scope`,
//! problems and those shared functions); nothing imports it but `runtime`.
//!
//! | Module | Its one job |
//! |---|---|
//! | `session` | The session cookie and the CSRF token: pure functions of a key, tested with tables. |
//! | `auth` | Login, logout, and the gate in front of every page (session → `Viewer`, CSRF on posts). |
//! | `page` | The frame every page shares (navigation, who is logged in), rendering, error pages, formats. |
//! | `spark` | The overview's sparklines as inline SVG: a pure function of counts and the expected band. |
//! | `assets` | The embedded CSS, JavaScript and vendored libraries (htmx, uPlot). |
//! | `overview`, `tenant`, `event`, `alerts`, `silences`, `recoveries`, `audit` | One page each (and its live fragment, polled by htmx). |
//! | `incidents`, `drills` | A list with its form, and one page per incident or drill (each with its live fragment). |
//!
//! **Adding a page**: a module here with its handlers and a template under
//! `crates/server/templates/`, its routes in [`routes`], and one line in [`NAV`].

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use intake_store::{Store, StoreError};

use crate::state::AppState;

mod alerts;
mod assets;
mod audit;
mod auth;
mod drills;
mod event;
mod incidents;
mod overview;
mod page;
mod recoveries;
pub mod session;
mod silences;
mod spark;
mod tenant;

/// One entry of the navigation.
pub(crate) struct NavEntry {
    /// Its path.
    pub path: &'static str,
    /// What the link says.
    pub label: &'static str,
}

/// The navigation, in order.
pub(crate) const NAV: &[NavEntry] = &[
    NavEntry {
        path: "/",
        label: "Overview",
    },
    NavEntry {
        path: "/alerts",
        label: "Alerts",
    },
    NavEntry {
        path: "/incidents",
        label: "Incidents",
    },
    NavEntry {
        path: "/silences",
        label: "Silences",
    },
    NavEntry {
        path: "/recoveries",
        label: "Recovery",
    },
    NavEntry {
        path: "/audit",
        label: "Audit",
    },
    NavEntry {
        path: "/drills",
        label: "Drills",
    },
];

/// The dashboard's routes: the login and the assets are open, every other page is behind the
/// session gate. Fragments (`/_/…`) are the live parts of pages, polled by htmx.
pub(crate) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/_/overview", get(overview::fragment))
        .route("/tenants/{id}", get(tenant::page))
        .route("/_/tenants/{id}", get(tenant::fragment))
        .route("/events/{id}", get(event::page))
        .route("/events/{id}/replay", post(event::replay))
        .route("/alerts", get(alerts::page))
        .route("/_/alerts", get(alerts::fragment))
        .route("/silences", get(silences::page).post(silences::create))
        .route("/silences/{id}", get(silences::show))
        .route("/silences/{id}/expire", post(silences::expire))
        .route(
            "/recoveries",
            get(recoveries::page).post(recoveries::create),
        )
        .route("/recoveries/{id}", get(recoveries::show))
        .route("/_/recoveries/{id}", get(recoveries::fragment))
        .route("/recoveries/{id}/run", post(recoveries::run))
        .route("/recoveries/{id}/cancel", post(recoveries::cancel))
        .route("/audit", get(audit::page))
        .route("/incidents", get(incidents::page).post(incidents::declare))
        .route("/_/incidents", get(incidents::fragment))
        .route("/incidents/{id}", get(incidents::show))
        .route("/_/incidents/{id}", get(incidents::fragment_one))
        .route("/incidents/{id}/updates", post(incidents::update))
        .route("/incidents/{id}/resolve", post(incidents::resolve))
        .route("/incidents/{id}/postmortem", get(incidents::postmortem))
        .route("/drills", get(drills::page).post(drills::create))
        .route("/_/drills", get(drills::fragment))
        .route("/drills/{id}", get(drills::show))
        .route("/_/drills/{id}", get(drills::fragment_one))
        .route("/drills/{id}/cancel", post(drills::cancel))
        .route("/logout", post(auth::logout))
        .layer(middleware::from_fn_with_state(state, auth::require_session));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/assets/{name}", get(assets::serve))
        .merge(pages)
}

/// The key that signs sessions and CSRF tokens: 32 random bytes made once per cluster and
/// kept in the store (as the canary key is), so every node accepts every node's sessions.
pub(crate) async fn session_key(store: &dyn Store) -> Result<[u8; 32], StoreError> {
    let stored = store
        .init_state(session::KEY_STATE, hex::encode(rand::random::<[u8; 32]>()))
        .await?;
    hex::decode(stored.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| StoreError::Corrupt("the stored dashboard session key is unreadable".into()))
}
