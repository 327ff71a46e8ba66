//! Headless Chromium for the tests of web pages (swarmctl's dashboard), driven over the
//! DevTools protocol: open a page, read its DOM through JavaScript, collect every console
//! error, uncaught exception and failed load, take a screenshot.
//!
//! The browser is Debian's `chromium` (or `$SWARM_CHROMIUM`, a path), started as a test's
//! child with a fresh profile directory and the flags a root process in a container needs
//! (no sandbox, no GPU, nothing fetched in the background). It writes the DevTools port it
//! chose into `DevToolsActivePort` in that profile; the test connects to it over a websocket
//! (tungstenite), opens one page and attaches to it (one flat session). Without a browser the
//! test fails, unless `SWARM_TEST_ALLOW_SKIP` names `chromium` (see [`crate::skip`]).

use base64::Engine as _;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// The longest one DevTools call, the browser's start or a page load may take.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// How long a read waits before the loop looks at its deadline again.
const READ_SLICE: Duration = Duration::from_millis(200);
/// Problems kept from the page (the first ones; a page that logs without end fails anyway).
const MAX_PROBLEMS: usize = 1000;

/// The Chromium binary: `$SWARM_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SWARM_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Console errors, uncaught exceptions and error-level log entries, in order.
    problems: Vec<String>,
    /// Events that arrived while a call waited for its answer, not yet looked at.
    pending: Vec<Value>,
    // Last: removed after the browser is gone.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts headless Chromium with a `width`×`height` page. `None` when there is no
    /// browser and `SWARM_TEST_ALLOW_SKIP` allows that (the skip is recorded); without that
    /// opt-out a missing browser fails the test.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let Some(binary) = find() else {
            crate::skip_or_fail(
                "chromium",
                "the browser test",
                "no chromium or chromium-browser on PATH, and SWARM_CHROMIUM is not set",
            );
            return None;
        };
        let profile = tempfile::tempdir().expect("a profile directory for chromium");
        let child = launch(&binary, profile.path(), width, height);
        let (port, path) = wait_for_devtools(profile.path());
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        // The handshake waits as long as a call may; reads after it wait in slices, so that
        // every loop looks at its own deadline.
        let set_timeout = |stream: &TcpStream, timeout| {
            stream
                .set_read_timeout(Some(timeout))
                .expect("read timeout on the DevTools socket");
        };
        set_timeout(&stream, CALL_DEADLINE);
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (socket, _) = tungstenite::client::client(url.as_str(), stream)
            .unwrap_or_else(|err| panic!("DevTools websocket {url}: {err}"));
        set_timeout(socket.get_ref(), READ_SLICE);
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 1,
            problems: Vec::new(),
            pending: Vec::new(),
            _profile: profile,
        };
        browser.open_page(width, height);
        Some(browser)
    }

    /// A new page target, attached as a flat session, with the domains whose events we read.
    fn open_page(&mut self, width: u32, height: u32) {
        let target = self.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].clone();
        let attached = self.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        self.session = attached["sessionId"]
            .as_str()
            .expect("a DevTools session id")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(domain, json!({}));
        }
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Loads `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) {
        self.pending.clear();
        let answer = self.call("Page.navigate", json!({"url": url}));
        assert!(
            answer.get("errorText").is_none(),
            "loading {url} failed: {answer}"
        );
        self.wait_event("Page.loadEventFired");
    }

    /// The value of a JavaScript expression in the page (promises awaited); a thrown
    /// exception fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = answer.get("exceptionDetails") {
            panic!("evaluating {expression:?} threw: {details}");
        }
        answer["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (not false, null, 0 or ""), and returns
    /// that value; fails the test after `deadline`, naming `what`.
    pub fn wait_for(&mut self, what: &str, expression: &str, deadline: Duration) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < until,
                "timed out after {deadline:?} waiting for {what} ({expression})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every console error, uncaught exception and error-level log entry (a failed load, a
    /// refused resource) the page produced so far.
    pub fn problems(&mut self) -> Vec<String> {
        self.drain_events();
        self.problems.clone()
    }

    /// A PNG of the page as it is now.
    pub fn screenshot_png(&mut self) -> Vec<u8> {
        let answer = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = answer["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("the screenshot is base64")
    }

    /// A command to the page's session; its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|err| panic!("DevTools {method}: {err}"));
        let deadline = Instant::now() + CALL_DEADLINE;
        loop {
            let message = self.read(deadline, method);
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    panic!("DevTools {method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note(message);
        }
    }

    /// Waits for the event `method` (looking first at those already received).
    fn wait_event(&mut self, method: &str) {
        if let Some(at) = self.pending.iter().position(|e| e["method"] == method) {
            self.pending.remove(at);
            return;
        }
        let deadline = Instant::now() + CALL_DEADLINE;
        loop {
            let message = self.read(deadline, method);
            if message["method"] == method {
                return;
            }
            self.note(message);
        }
    }

    /// Reads what the browser sent until now without waiting.
    fn drain_events(&mut self) {
        while let Some(message) = self.try_read() {
            self.note(message);
        }
    }

    /// The next message; fails the test at `deadline`.
    fn read(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        loop {
            if let Some(message) = self.try_read() {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "DevTools: no answer to {waiting_for} within {CALL_DEADLINE:?}"
            );
        }
    }

    /// One message if one arrives within [`READ_SLICE`].
    fn try_read(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => Some(
                serde_json::from_str(text.as_str())
                    .unwrap_or_else(|err| panic!("DevTools sent bad JSON ({err}): {text}")),
            ),
            Ok(_) => None, // pings, pongs: tungstenite answers them
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(err) => panic!("DevTools connection: {err}"),
        }
    }

    /// Keeps what an event says about problems in the page.
    fn note(&mut self, event: Value) {
        if let Some(problem) = problem_of(&event) {
            if self.problems.len() < MAX_PROBLEMS {
                self.problems.push(problem);
            }
        }
        if event.get("method").is_some() && self.pending.len() < MAX_PROBLEMS {
            self.pending.push(event);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing through DevTools lets Chromium end its helper processes itself.
        let id = self.next_id;
        let close = json!({"id": id, "method": "Browser.close"});
        let _ = self.socket.send(Message::text(close.to_string()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(binary: &Path, profile: &Path, width: u32, height: u32) -> Child {
    let log = std::fs::File::create(profile.join("chromium.log")).expect("chromium log file");
    let log_err = log.try_clone().expect("chromium log file");
    Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()))
}

/// The DevTools port and browser path Chromium wrote into its profile.
fn wait_for_devtools(profile: &Path) -> (u16, String) {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + CALL_DEADLINE;
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut lines = text.lines();
        if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
            if let Ok(port) = port.trim().parse() {
                return (port, path.trim().to_string());
            }
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default();
            panic!(
                "chromium wrote no DevToolsActivePort within {CALL_DEADLINE:?}; its output:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The problem an event reports, if it reports one.
fn problem_of(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled"
            if matches!(params["type"].as_str(), Some("error" | "assert")) =>
        {
            let args: Vec<String> = params["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|arg| {
                            arg.get("value")
                                .map(|v| v.to_string())
                                .or_else(|| arg["description"].as_str().map(str::to_string))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(format!("console.{}: {}", params["type"], args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let description = details["exception"]["description"]
                .as_str()
                .unwrap_or_default();
            Some(format!("uncaught: {} {description}", details["text"]))
        }
        "Log.entryAdded" if params["entry"]["level"] == "error" => {
            let entry = &params["entry"];
            Some(format!(
                "log ({}): {} {}",
                entry["source"], entry["text"], entry["url"]
            ))
        }
        _ => None,
    }
}
