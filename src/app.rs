//! Starts the chosen roles and ties their lifetimes together.

use std::net::SocketAddr;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::ci::Surface;
use crate::ci::hooks::{self, Hooks};
use crate::cli::Role;
use crate::clients::Clients;
use crate::config::{Config, Driver};
use crate::endpoint::{Endpoint, sts::Sts};
use crate::provision::{self, ProvisionError};
use crate::queue::{QueueError, QueueService};
use crate::s3compat::{self, S3CompatError};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::{web, worker};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(
        "data dir {} is in use by another crunchbox{}: stop it, or give this one its own --data-dir",
        path.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: std::path::PathBuf, pid: Option<u32> },
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { addr: SocketAddr, key: &'static str, source: std::io::Error },
    #[error(transparent)]
    S3(#[from] S3CompatError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error("opening the stores failed: {0}")]
    Open(#[source] tokio::task::JoinError),
}

/// A running set of roles. Tests start one in-process on ephemeral ports.
pub struct App {
    /// Where the embedded S3 + SQS listen, if those roles run.
    pub aws_addr: Option<SocketAddr>,
    /// Where the web role listens, if it runs.
    pub web_addr: Option<SocketAddr>,
    /// The roles running.
    pub roles: Vec<Role>,
    /// Shutdown order: each stage drains before the next is told to stop,
    /// so a crunch in flight still has the AWS endpoint for its PUTs and
    /// DeleteMessage, and an upload in flight for its PutObject.
    worker: Stage,
    web: Stage,
    aws: Stage,
    queue: Option<QueueService>,
    /// Init hooks and the CI endpoints' view of them.
    pub ci: Arc<Surface>,
}

/// The tasks of one role and the signal that stops them.
struct Stage {
    name: &'static str,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
}

impl Stage {
    fn new(name: &'static str) -> Self {
        let (trigger, shutdown) = Shutdown::new();
        Self { name, trigger, shutdown, tasks: JoinSet::new() }
    }

    async fn stop(mut self) {
        if self.tasks.is_empty() {
            return;
        }
        tracing::info!(stage = self.name, "stopping");
        self.trigger.trigger();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds every listener the roles need and starts them.
pub async fn start(config: Config, roles: &[Role]) -> Result<App, AppError> {
    let (mut worker_stage, mut web_stage, mut aws_stage) = (Stage::new("worker"), Stage::new("web"), Stage::new("aws"));
    let has = |r: Role| roles.contains(&r);
    // Install the recorder before anything counts, so no early sample is lost.
    let _ = crate::metrics::handle();

    let hooks = Arc::new(Hooks::new(config.init_dir.clone()));
    let ci = Arc::new(Surface::new(hooks, config.aws.dev_endpoints));
    let mut aws_addr = None;
    let mut queue = None;
    if has(Role::S3) || has(Role::Sqs) {
        // Only the stateful roles keep data: web and worker stay stateless
        // (and run on a read-only filesystem).
        crate::durable::create_dir_all_durable(&config.data_dir)
            .map_err(|source| AppError::DataDir { path: config.data_dir.clone(), source })?;
        in_use_check(&config.data_dir, has(Role::S3), has(Role::Sqs))?;
        // Opening the stores reads, replays and syncs files (and may wait out
        // a lock): off the async threads.
        let (s3, sqs) = {
            let config = config.clone();
            let (want_s3, want_sqs) = (has(Role::S3), has(Role::Sqs));
            tokio::task::spawn_blocking(move || -> Result<_, AppError> {
                let s3 = if want_s3 { Some(s3compat::service(&config)?) } else { None };
                let sqs = if want_sqs { Some(QueueService::open(&config)?) } else { None };
                Ok((s3, sqs))
            })
            .await
            .map_err(AppError::Open)??
        };
        if let Some(q) = &sqs {
            // Long polls end at once on shutdown instead of holding the drain.
            q.watch_shutdown(aws_stage.shutdown.clone());
        }
        queue = sqs.clone();
        if let Some(s3) = &s3 {
            if let Some(q) = &sqs {
                s3.connect_events(Arc::new(q.clone()));
            }
            aws_stage.tasks.spawn(s3.deliver_events(aws_stage.shutdown.clone()));
        }
        let endpoint = Endpoint {
            s3,
            sqs,
            sts: Sts::new(&config),
            region: config.aws.region.as_str().into(),
            ci: Arc::clone(&ci),
        };
        let listener = bind(config.aws.listen, "aws.listen").await?;
        aws_addr = listener.local_addr().ok();
        aws_stage.tasks.spawn(crate::listener::serve(
            "aws",
            listener,
            config.aws.max_connections,
            move |req| {
                let endpoint = endpoint.clone();
                async move { endpoint.handle(req).await }
            },
            aws_stage.shutdown.clone(),
        ));
    }

    let mut web_addr = None;
    if has(Role::Web) || has(Role::Worker) {
        let endpoint_url = match aws_addr {
            Some(addr) => format!("http://{addr}"),
            None => config.embedded_endpoint_url(),
        };
        let clients = Clients::new(&config, &endpoint_url).await;
        // Embedded mode owns its resources and creates them; in aws mode
        // they are provisioned explicitly and only checked here.
        let queues = match config.driver {
            Driver::Embedded => {
                let queues = provision::ensure(&clients, &config).await.map_err(with_embedded_hint)?.0;
                // After a CI reset, the same resources again.
                let (clients, config) = (clients.clone(), config.clone());
                ci.set_reprovision(Box::new(move || {
                    let (clients, config) = (clients.clone(), config.clone());
                    Box::pin(async move {
                        provision::ensure(&clients, &config).await.map(|_| ()).map_err(|e| e.to_string())
                    })
                }));
                queues
            }
            Driver::Aws => provision::check(&clients, &config).await?,
        };
        if has(Role::Web) {
            let listener = bind(config.web.listen, "web.listen").await?;
            web_addr = listener.local_addr().ok();
            // Bound first, so a default `web.public_url` names the real port.
            let mut config = config.clone();
            config.web.public_url = config.public_url(web_addr);
            let settings = web::Settings::new(&config, queues.queue_url.clone(), queues.dlq_url.clone());
            let state = web::WebState::new(&clients, settings, web_stage.shutdown.clone());
            let router = web::router(state);
            web_stage.tasks.spawn(crate::listener::serve(
                "web",
                listener,
                config.web.max_connections,
                move |req| {
                    let router = router.clone();
                    async move {
                        match router.oneshot(req).await {
                            Ok(resp) => resp,
                            Err(never) => match never {},
                        }
                    }
                },
                web_stage.shutdown.clone(),
            ));
        }
        if has(Role::Worker) {
            let settings = worker::Settings::new(&config, queues.queue_url, queues.dlq_url);
            worker_stage.tasks.spawn(worker::run(clients, settings, worker_stage.shutdown.clone()));
        }
    }

    Ok(App {
        aws_addr,
        web_addr,
        roles: roles.to_vec(),
        worker: worker_stage,
        web: web_stage,
        aws: aws_stage,
        queue,
        ci,
    })
}

/// Fails at once, naming the data dir and the process, when another
/// crunchbox holds the stores this one is about to open (each store also
/// refuses on its own, in its own words, where the holder cannot be seen).
fn in_use_check(data_dir: &std::path::Path, s3: bool, sqs: bool) -> Result<(), AppError> {
    let stores = [(s3, s3compat::meta_dir(data_dir)), (sqs, crate::queue::store_dir(data_dir))];
    for (_, dir) in stores.iter().filter(|(wanted, _)| *wanted) {
        if let Some(pid) = crate::durable::lock_holder(dir).filter(|pid| *pid != std::process::id()) {
            return Err(AppError::InUse { path: data_dir.to_owned(), pid: Some(pid) });
        }
    }
    Ok(())
}

async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, key, source })
}

impl App {
    /// Stops the roles in stages — worker (running crunches finish), web
    /// (in-flight requests finish), the AWS endpoint — then flushes storage.
    pub async fn shutdown(self) {
        self.worker.stop().await;
        self.web.stop().await;
        self.aws.stop().await;
        if let Some(queue) = &self.queue
            && let Err(e) = queue.close().await
        {
            tracing::error!(error = %e, "queue flush on shutdown failed");
        }
    }
}

/// `crunchbox serve`: start, print where everything is, run the `ready.d`
/// hooks and say `Ready.`, run until a signal, then the `shutdown.d` hooks
/// (the endpoint still serving them) and stop.
pub async fn run(mut config: Config, roles: Vec<Role>, ephemeral: bool) -> Result<(), AppError> {
    let scratch = if ephemeral {
        let dir = ephemeral_dir().map_err(|source| AppError::DataDir { path: std::env::temp_dir(), source })?;
        config.data_dir = dir.clone();
        config.aws.dev_endpoints = true;
        Some(dir)
    } else {
        None
    };
    let result = serve(&config, &roles, scratch.is_some()).await;
    if let Some(dir) = scratch
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the ephemeral data dir");
    }
    result
}

async fn serve(config: &Config, roles: &[Role], ephemeral: bool) -> Result<(), AppError> {
    crate::fdlimit::prepare(config, roles);
    let app = start(config.clone(), roles).await?;
    // Listening for signals before anything says we are up.
    let stopped = crate::shutdown::signal();
    crate::banner::print(config, &app, ephemeral);
    let env = hook_env(config, &app);
    app.ci.hooks.run(hooks::Stage::Ready, &env).await;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Ready.");
        let _ = out.flush();
    }
    app.ci.hooks.mark_ready();
    stopped.await;
    tracing::info!("shutting down");
    app.ci.hooks.run(hooks::Stage::Shutdown, &env).await;
    app.shutdown().await;
    Ok(())
}

/// A fresh directory under the system's temp dir for `--ephemeral`.
fn ephemeral_dir() -> std::io::Result<std::path::PathBuf> {
    let (hi, lo) = (getrandom::u64().unwrap_or(0), std::process::id());
    let dir = std::env::temp_dir().join(format!("crunchbox-ephemeral-{lo}-{hi:016x}"));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// What init hooks see: the embedded endpoint and its first key pair.
fn hook_env(config: &Config, app: &App) -> Vec<(&'static str, String)> {
    let endpoint = match app.aws_addr {
        Some(addr) => crate::banner::url(addr),
        None => config.embedded_endpoint_url(),
    };
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", config.aws.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", config.aws.secret_access_key.clone()),
        ("AWS_DEFAULT_REGION", config.aws.region.clone()),
        ("AWS_REGION", config.aws.region.clone()),
    ]
}

/// Without `--driver aws`, web, worker and provision talk to the embedded
/// S3 and SQS of a crunchbox at `aws.listen`; when none answers there, say
/// how to start one, or how to use AWS instead.
fn with_embedded_hint(e: ProvisionError) -> ProvisionError {
    match e {
        ProvisionError::Unreachable { target, detail, source } => {
            let detail = format!(
                "{detail}; without --driver aws this needs a crunchbox serving S3 and SQS there: start one with \
                 `crunchbox serve --roles s3,sqs`, or use --driver aws (and --aws-endpoint-url for another S3/SQS)"
            );
            ProvisionError::Unreachable { target, detail, source }
        }
        other => other,
    }
}

/// `crunchbox provision`: creates what is missing and says what it did.
/// With the embedded driver it talks to a running crunchbox at `aws.listen`
/// (one started with `serve --roles s3,sqs`, say); with `--driver aws` to
/// AWS or `--aws-endpoint-url`, through the same clients web and worker use.
pub async fn provision(config: Config) -> Result<(), AppError> {
    let clients = Clients::new(&config, &config.embedded_endpoint_url()).await;
    let (_, report) = match provision::ensure(&clients, &config).await {
        Ok(done) => done,
        Err(e) if config.driver == Driver::Embedded => return Err(with_embedded_hint(e).into()),
        Err(e) => return Err(e.into()),
    };
    for line in report {
        println!("{line}");
    }
    Ok(())
}
