//! The app's routes.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/codes/{id}` | 200 `{"id","color","updated_at"}`, color and date derived from the id |
//! | `POST /api/v1/scans` | 201 `{"id","scans"}` (body `{"id": "..."}` optional); not idempotent |
//! | `GET /healthz` | 200 `ok` (bypasses the capacity model) |
//! | `GET /stats` | 200 [`Stats`](super::capacity::Stats) JSON (bypasses the capacity model) |
//!
//! Codes and scans go through the capacity model: 503 with `Retry-After: 1` when the
//! queue is full, and `fail_rate` of them are answered 500 after their service time.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::capacity::Capacity;
use super::AppConfig;

/// State shared by all connections.
#[derive(Debug)]
pub struct AppState {
    /// Settings.
    pub config: AppConfig,
    /// Capacity model and counters.
    pub capacity: Capacity,
}

impl AppState {
    /// State for `config`.
    pub fn new(config: AppConfig) -> Self {
        Self {
            capacity: Capacity::new(config.workers, config.max_queue),
            config,
        }
    }
}

/// The code color of an id: about 80% green, 15% yellow, 5% red, stable per id.
pub fn color_of(id: &str) -> &'static str {
    match fnv1a(id) % 100 {
        0..=79 => "green",
        80..=94 => "yellow",
        _ => "red",
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A stable `updated_at` for an id: some second in the 90 days from 2024-01-01 UTC.
pub fn updated_at_of(id: &str) -> String {
    let secs = 1_704_067_200 + (fnv1a(id) >> 8) % (90 * 86_400);
    rfc3339(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let civil = floodgate::time::civil(secs);
    format!("{}Z", String::from_utf8_lossy(&civil))
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn overloaded() -> Response<Full<Bytes>> {
    let mut r = json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({"error": "overloaded"}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Handles one request.
pub async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
        (&Method::GET, "/stats") => {
            let stats = state.capacity.stats();
            json(
                StatusCode::OK,
                &serde_json::to_value(stats).unwrap_or_default(),
            )
        }
        (&Method::GET, p) if p.starts_with("/api/v1/codes/") => {
            let id = p.trim_start_matches("/api/v1/codes/").to_string();
            if id.is_empty() || id.contains('/') {
                return json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not found"}),
                );
            }
            serve(&state, || {
                let mut r = json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "id": id,
                        "color": color_of(&id),
                        "updated_at": updated_at_of(&id),
                    }),
                );
                if let Some(cc) = state
                    .config
                    .cache_control
                    .as_deref()
                    .and_then(|v| header::HeaderValue::from_str(v).ok())
                {
                    r.headers_mut().insert(header::CACHE_CONTROL, cc);
                }
                r
            })
            .await
        }
        (&Method::POST, "/api/v1/scans") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"error": "bad body"}),
                    )
                }
            };
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("id").map(|id| match id {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                })
                .unwrap_or_default();
            let st = state.clone();
            serve(&state, move || {
                let n = st.capacity.record_scan();
                json(
                    StatusCode::CREATED,
                    &serde_json::json!({"id": id, "scans": n}),
                )
            })
            .await
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
    }
}

/// Runs `ok` inside a worker slot after the service time, or answers 503 / 500.
async fn serve(
    state: &AppState,
    ok: impl FnOnce() -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let Some(_slot) = state.capacity.admit().await else {
        return overloaded();
    };
    if !state.config.service_time.is_zero() {
        tokio::time::sleep(state.config.service_time).await;
    }
    if state.config.fail_rate > 0.0 && rand::random::<f64>() < state.config.fail_rate {
        state.capacity.count_failure();
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({"error": "injected failure"}),
        );
    }
    ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_are_stable_and_mixed() {
        assert_eq!(color_of("123"), color_of("123"));
        let mut n = [0; 3];
        for i in 0..10_000 {
            match color_of(&i.to_string()) {
                "green" => n[0] += 1,
                "yellow" => n[1] += 1,
                _ => n[2] += 1,
            }
        }
        assert!(n[0] > 7000 && n[1] > 1000 && n[2] > 200, "{n:?}");
    }

    #[test]
    fn dates_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert!(updated_at_of("42").starts_with("2024-"));
    }
}
