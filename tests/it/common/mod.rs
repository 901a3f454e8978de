//! Shared test helpers: temporary snippet/platform trees, running compiled code under node, Mosquitto brokers on
//! free ports with their own config, and the one [`eventually`] that waits on a condition with a timeout.

pub mod cluster;
pub mod mqtt;
pub mod process;
pub mod prometheus;
pub mod release;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary catalog: `root/snippets` and `root/platforms`.
pub struct TempCatalog {
    pub dir: tempfile::TempDir,
}

impl TempCatalog {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("snippets")).unwrap();
        std::fs::create_dir_all(dir.path().join("platforms")).unwrap();
        TempCatalog { dir }
    }

    /// A copy of the repository's example snippets and platforms.
    pub fn examples() -> Self {
        let t = TempCatalog::new();
        copy_dir(&repo().join("snippets"), &t.snippets());
        copy_dir(&repo().join("platforms"), &t.platforms());
        t
    }

    pub fn snippets(&self) -> PathBuf {
        self.dir.path().join("snippets")
    }

    pub fn platforms(&self) -> PathBuf {
        self.dir.path().join("platforms")
    }

    /// Writes `snippets/<rel>`, creating folders.
    pub fn snippet(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        write(&self.snippets().join(rel), content.as_ref());
        self
    }

    /// Writes `platforms/<rel>`.
    pub fn platform(&self, rel: &str, content: &str) -> &Self {
        write(&self.platforms().join(rel), content.as_bytes());
        self
    }

    pub fn sources(&self) -> connector_scripts::catalog::Sources {
        connector_scripts::catalog::Sources {
            snippets: self.snippets(),
            platforms: self.platforms(),
            max_file_size: connector_scripts::catalog::loader::DEFAULT_MAX_FILE_SIZE,
            max_reply_size: connector_scripts::config::defaults::MAX_REPLY_SIZE,
        }
    }

    pub fn build(&self) -> connector_scripts::catalog::Catalog {
        connector_scripts::catalog::build(&self.sources(), &mut Default::default(), None)
    }
}

pub fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The node helper packages (installed by `.ci/run`: `npm ci --prefix tests/interop`).
pub fn node_dir() -> PathBuf {
    let dir = repo().join("tests/interop");
    assert!(
        dir.join("node_modules").is_dir(),
        "tests/interop/node_modules is missing: run `npm ci --prefix tests/interop` (done by .ci/run)"
    );
    dir
}

/// Runs compiled connector code under node (see tests/interop/run_script.js) and returns its JSON verdict.
pub fn run_js(code: &str, format: &str, name: &str, es5: bool, call: &str) -> serde_json::Value {
    let input = serde_json::json!({"code": code, "format": format, "name": name, "es5": es5, "call": call});
    node_json("run_script.js", &input)
}

/// Runs one of the Node helpers in tests/interop with `input` as JSON on stdin; its stdout parsed as JSON.
pub fn node_json(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let dir = node_dir();
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is required (scripts/test installs it)");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("bad output from {script} ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`. Async: the service under test may run
/// on this runtime, so waiting never blocks a runtime thread.
pub async fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A free TCP port on 127.0.0.1, bound then released for a server of another process that cannot be given port
/// 0 and report back (Mosquitto, the service binary). Starters retry with another port if it was taken meanwhile.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A broker address where nothing ever answers: its port stays bound (not listening) while this lives, so a
/// connection is refused at once and no server another test starts meanwhile can take the port (a port from
/// [`free_port`] is released, and a parallel test's listener on it once made a "dead" node hang).
pub struct DeadBroker {
    _socket: socket2::Socket,
    /// `mqtt://127.0.0.1:PORT`.
    pub url: String,
}

/// See [`DeadBroker`].
pub fn dead_broker() -> DeadBroker {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    DeadBroker { _socket: socket, url: format!("mqtt://127.0.0.1:{port}") }
}

/// Two consecutive free ports (for the embedded broker's two listeners).
pub fn free_port_pair() -> (u16, u16) {
    for _ in 0..100 {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return (p, p + 1);
        }
    }
    panic!("no two consecutive free ports");
}

/// A Mosquitto broker started by the test on a free port with its own config; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: std::process::Child,
    conf: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        Mosquitto::start_with("allow_anonymous true\n").await
    }

    /// Starts with `settings` (options of the single listener and global ones; `{dir}` is the broker's own
    /// temporary directory).
    pub async fn start_with(settings: &str) -> Mosquitto {
        let settings = settings.to_string();
        Mosquitto::start_conf(move |port, dir| {
            format!(
                "per_listener_settings false\nlistener {port} 127.0.0.1\nset_tcp_nodelay true\n\
                 max_queued_messages 1000000\nlog_dest file {dir}/mosquitto.log\nlog_type all\n{}\n",
                settings.replace("{dir}", dir)
            )
        })
        .await
    }

    /// Starts with the whole configuration `conf(port, dir)` writes. Retries on another port if the chosen one
    /// was taken before Mosquitto bound it.
    pub async fn start_conf(conf: impl Fn(u16, &str) -> String) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        // Started as root, Mosquitto drops to its own user: let it write its log and persistence file here.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let path = dir.path().join("mosquitto.conf");
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(&path, conf(port, &dir.path().display().to_string())).unwrap();
            if let Some(child) = Mosquitto::spawn(&path, port).await {
                return Mosquitto { port, child, conf: path, dir };
            }
        }
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        panic!("mosquitto did not start with {}:\n{}{}", path.display(), read("stderr.log"), read("mosquitto.log"));
    }

    /// Starts Mosquitto and waits until it listens on `port`; `None` if it exited (the port was taken).
    async fn spawn(conf: &Path, port: u16) -> Option<std::process::Child> {
        // Start-up errors (a bad configuration line) go to stderr, before any log file is opened.
        let stderr = std::fs::File::create(conf.with_file_name("stderr.log")).unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("mosquitto must be installed (scripts/test installs it)");
        let up = eventually(Duration::from_secs(10), "mosquitto to listen or exit", || {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                Some(true)
            } else {
                child.try_wait().ok().flatten().map(|_| false)
            }
        })
        .await;
        up.then_some(child)
    }

    /// Stops the broker cleanly (SIGTERM: persistent state is saved) and starts it again on the same port.
    pub async fn restart(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        self.start_again().await;
    }

    /// SIGKILL, as a crashed machine: no goodbye to anyone, nothing saved.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on its own port, with its own configuration (after [`Mosquitto::kill`]).
    pub async fn start_again(&mut self) {
        self.child = Mosquitto::spawn(&self.conf, self.port).await.expect("mosquitto restarts on its own port");
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The last lines of the broker's log, for failure messages.
    pub fn log_tail(&self) -> String {
        process::log_tail(&self.dir.path().join("mosquitto.log"), 40)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a Mosquitto password file at `path` with `users` (name, password), through `mosquitto_passwd`.
pub fn password_file_at(path: &Path, users: &[(&str, &str)]) -> String {
    std::fs::write(path, "").unwrap();
    for (u, p) in users {
        let ok = Command::new("mosquitto_passwd").arg("-b").arg(path).args([u, p]).status().unwrap();
        assert!(ok.success(), "mosquitto_passwd");
    }
    path.display().to_string()
}

/// A Mosquitto started with `deploy/mosquitto/mosquitto.conf` and `acl` as shipped, with only ports and paths
/// moved into the test's directory: the device listener on `mosquitto.port`, the service listener on
/// `service_port`, and the two password files made from `devices` and `services`.
pub struct ShippedMosquitto {
    pub mosquitto: Mosquitto,
    pub service_port: u16,
}

impl ShippedMosquitto {
    pub async fn start(devices: &[(&str, &str)], services: &[(&str, &str)]) -> ShippedMosquitto {
        let service_port = std::sync::Mutex::new(0u16);
        let mosquitto = Mosquitto::start_conf(|port, dir| {
            let second = free_port();
            *service_port.lock().unwrap() = second;
            password_file_at(&Path::new(dir).join("devices.passwd"), devices);
            password_file_at(&Path::new(dir).join("service.passwd"), services);
            shipped_conf([port, second], dir)
        })
        .await;
        let service_port = *service_port.lock().unwrap();
        ShippedMosquitto { mosquitto, service_port }
    }

    /// The service listener's URL.
    pub fn service_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.service_port)
    }
}

/// The shipped configuration with its listeners on `ports` (in order) and its files in `dir`.
fn shipped_conf(ports: [u16; 2], dir: &str) -> String {
    let text = std::fs::read_to_string(repo().join("deploy/mosquitto/mosquitto.conf")).unwrap();
    let acl = repo().join("deploy/mosquitto/acl");
    let (mut listeners, mut passwords) = (ports.iter(), ["devices", "service"].iter());
    let moved: Vec<String> = text
        .lines()
        .map(|line| match line.split_whitespace().next() {
            Some("listener") => format!("listener {} 127.0.0.1", listeners.next().expect("two listeners")),
            Some("password_file") => format!("password_file {dir}/{}.passwd", passwords.next().expect("two files")),
            Some("acl_file") => format!("acl_file {}", acl.display()),
            Some("persistence_location") => format!("persistence_location {dir}/"),
            _ => line.to_string(),
        })
        .collect();
    assert!(listeners.next().is_none(), "the shipped config has two listeners");
    format!("{}\nlog_dest file {dir}/mosquitto.log\nlog_type all\n", moved.join("\n"))
}

/// Spawns the `connector-scripts serve` binary on `catalog` with extra flags (stdout/stderr discarded).
pub fn spawn_service(catalog: &TempCatalog, args: &[&str], envs: &[(&str, String)]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_connector-scripts"));
    cmd.arg("serve")
        .args(args)
        .arg("--snippets")
        .arg(catalog.snippets())
        .arg("--platforms")
        .arg(catalog.platforms())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the service binary starts")
}
