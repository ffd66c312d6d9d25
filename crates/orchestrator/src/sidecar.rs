//! Sidecars: processes a scenario starts before its UAs (a PBX, a phone) and stops after the SIP
//! cleanup. Each runs in a process group of its own, so stopping it stops every process it forked.

use crate::bus::EventBus;
use crate::ua::log;
use events::Level;
use scenario::{Health, Sidecar};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

pub(crate) struct Running {
    pub(crate) name: String,
    child: tokio::process::Child,
    output: Arc<Mutex<String>>,
}

/// Signals the process group `pid` leads. A group already gone is not an error (the `kill`
/// command printed "No such process" after every run whose sidecar had exited).
fn group_signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

impl Running {
    /// Starts `sc` in `dir` and waits until its health check passes (at most its timeout).
    pub(crate) async fn start(
        sc: &Sidecar,
        dir: &Path,
        bus: &Arc<EventBus>,
    ) -> Result<Self, String> {
        let mut cmd = tokio::process::Command::new(&sc.command[0]);
        cmd.args(&sc.command[1..])
            .current_dir(dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "sidecar `{}`: cannot start `{}`: {e}",
                sc.name, sc.command[0]
            )
        })?;
        let output = Arc::new(Mutex::new(String::new()));
        let pipes: Vec<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for pipe in pipes {
            let (out, bus, name) = (output.clone(), bus.clone(), sc.name.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut o = out.lock().expect("output lock");
                    if o.len() < 1 << 20 {
                        o.push_str(&line);
                        o.push('\n');
                    }
                    drop(o);
                    log(
                        &bus,
                        Level::Debug,
                        None,
                        None,
                        None,
                        format!("[{name}] {line}"),
                    );
                }
            });
        }
        let mut running = Self {
            name: sc.name.clone(),
            child,
            output,
        };
        let started = Instant::now();
        loop {
            if running.healthy(&sc.health).await {
                log(
                    bus,
                    Level::Info,
                    None,
                    None,
                    None,
                    format!(
                        "sidecar `{}` is up ({:.0} ms)",
                        sc.name,
                        started.elapsed().as_secs_f64() * 1000.0
                    ),
                );
                return Ok(running);
            }
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(format!(
                    "sidecar `{}` exited ({status}) before it was ready:\n{}",
                    sc.name,
                    running.tail()
                ));
            }
            if started.elapsed() > sc.timeout {
                let tail = running.tail();
                running.stop().await;
                return Err(format!(
                    "sidecar `{}` was not ready within {}:\n{tail}",
                    sc.name,
                    flow::secs(sc.timeout)
                ));
            }
            // The health check is a probe with its own short timeout; this paces the retries.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn tail(&self) -> String {
        let o = self.output.lock().expect("output lock");
        let lines: Vec<&str> = o.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    async fn healthy(&self, health: &Health) -> bool {
        match health {
            Health::None => true,
            Health::Log(text) => self
                .output
                .lock()
                .expect("output lock")
                .contains(text.as_str()),
            Health::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
            Health::Options(addr) => options_ok(*addr).await,
        }
    }

    /// Stops the whole process group: TERM, then KILL if it has not gone within 2 s.
    pub(crate) async fn stop(mut self) {
        let Some(pid) = self.child.id() else { return };
        group_signal(pid, rustix::process::Signal::TERM);
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            group_signal(pid, rustix::process::Signal::KILL);
            let _ = self.child.wait().await;
        }
        // Workers that outlived their parent.
        group_signal(pid, rustix::process::Signal::KILL);
    }
}

async fn options_ok(addr: std::net::SocketAddr) -> bool {
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return false;
    };
    let Ok(me) = sock.local_addr() else {
        return false;
    };
    let msg = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKhealth\r\nFrom: <sip:health@{me}>;tag=h\r\nTo: <sip:{addr}>\r\nCall-ID: health@{me}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    if sock.send_to(msg.as_bytes(), addr).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 2048];
    matches!(
        tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await,
        Ok(Ok((n, _))) if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200")
    )
}
