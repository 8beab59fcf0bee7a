//! `/api/faults`: the fault set of a running server ([`crate::faults`]).
//!
//! - `GET` the set, each fault with the times it fired, the seed and the
//!   run's message and handshake counts;
//! - `PUT` a JSON list of spec strings to replace the set (all or nothing:
//!   400 with the parse error, naming the bad spec, and the set unchanged);
//! - `DELETE` to clear it.
//!
//! The next message or handshake gets the new set; one already decided keeps
//! what it was given.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use crate::faults::{self, FaultHandle, FaultsView};

/// The routes, on their own state: merged into the inspector's router.
pub fn router(faults: FaultHandle) -> Router {
    Router::new()
        .route("/api/faults", get(show).put(replace).delete(clear))
        .with_state(faults)
}

async fn show(State(f): State<FaultHandle>) -> Json<FaultsView> {
    Json(f.lock().view())
}

fn bad(why: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

async fn replace(State(f): State<FaultHandle>, body: Bytes) -> Response {
    let specs: Vec<String> = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return bad(format!(
                "expected a JSON list of fault specs, e.g. [\"smtp:data:451@nth=1\"]: {e}"
            ));
        }
    };
    let parsed = match faults::parse_all(&specs) {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    let mut state = f.lock();
    if let Err(e) = state.replace(parsed) {
        return bad(e.to_string());
    }
    Json(state.view()).into_response()
}

async fn clear(State(f): State<FaultHandle>) -> Json<FaultsView> {
    let mut state = f.lock();
    // An empty set is always applicable.
    let _ = state.replace(Vec::new());
    Json(state.view())
}
