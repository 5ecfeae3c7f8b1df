//! Floodgate's data plane: a burst-tolerant reverse proxy and service-mesh sidecar.
//!
//! The modules form layers, each using only those below it (`docs/architecture.md`
//! has the diagram; `docs/request-path.md` walks one request through them):
//!
//! - leaves: [`headers`] (HTTP header rules), [`body`], [`error`] (the one error
//!   type and its response), [`time`] (the one clock), [`observe`] (metrics and
//!   the process log), [`access_log`] (line format and writer), [`config`] (file
//!   types → validation → runtime types) and [`tls`];
//! - [`workers`]: the per-core runtimes;
//! - [`upstream`]: talking to one endpoint (connect, HTTP/1.1 client, HTTP/2,
//!   pool, connection limits);
//! - [`balance`]: a cluster's policy and endpoint set, the balancer, outlier
//!   detection, the circuit breaker; [`health`]: active health checks;
//! - [`stack`]: the per-route tower layers (rate limit, cache, admission, retry,
//!   timeout) composed in one function; [`router`]: the route table;
//! - [`snapshot`]: everything a request needs, built from a config;
//!   [`forward`]: the request path over a snapshot;
//! - [`listener`]: accept, TLS, HTTP/1.1 and HTTP/2 serving for any handler;
//! - on top: [`state`] (the running [`state::Proxy`] and its one reload path,
//!   [`state::Proxy::apply`]), [`reload`] (file watch and SIGHUP),
//!   [`control_client`] (long poll of the control plane, ACK/NACK, the persisted
//!   snapshot), [`admin`].
//!
//! # Embedding: validate a config and drive the reload path
//!
//! The control plane validates with exactly this code, and a proxy applies what
//! it receives through the same [`state::Proxy::apply`] a file reload uses:
//!
//! ```
//! use std::path::Path;
//!
//! use floodgate::config;
//! use floodgate::state::{Applied, Proxy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let yaml = r#"
//! listeners:
//!   - name: public
//!     listen: 127.0.0.1:0
//!     routes: [ { name: all, cluster: app } ]
//! clusters:
//!   - name: app
//!     endpoints: ["127.0.0.1:9001"]
//! "#;
//! // Parse and validate: every error names the source, line, field and reason.
//! let first = config::parse_str(yaml, "gateway.yaml", Path::new("."))?;
//! let proxy = Proxy::start(first)?;
//! let addr = proxy.listener_addr("public").expect("bound");
//! assert!(addr.port() > 0);
//!
//! // A config that only adds an endpoint: the cluster keeps what it learned.
//! let more = yaml.replace(r#"["127.0.0.1:9001"]"#, r#"["127.0.0.1:9001", "127.0.0.1:9002"]"#);
//! let second = config::parse_str(&more, "gateway.yaml", Path::new("."))?;
//! assert_eq!(proxy.apply(second)?, Applied::New(2));
//! assert_eq!(proxy.cluster_status()[0].endpoints.len(), 2);
//!
//! // An invalid config is refused before anything changes.
//! let errors = config::parse_str("clusters: [ { name: app } ]", "bad.yaml", Path::new("."))
//!     .unwrap_err();
//! assert!(errors.to_string().contains("bad.yaml"));
//! assert_eq!(proxy.snapshot().version, 2);
//!
//! proxy.drain().await;
//! # Ok(())
//! # }
//! ```

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod balance;
pub mod body;
pub mod config;
pub mod control_client;
pub mod error;
pub mod forward;
pub mod headers;
pub mod health;
pub mod listener;
pub mod load;
pub mod observe;
pub mod reload;
pub mod router;
pub mod snapshot;
pub mod stack;
pub mod state;
pub mod time;
pub mod tls;
pub mod upstream;
pub mod workers;
