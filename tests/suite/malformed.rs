//! Malformed SIP from a peer, sent by raw UDP and TCP from the test: each request gets the answer
//! RFC 3261 names (400 with a Warning naming the problem, 505, 501), not silence; a 9 KB INVITE
//! (past rsipstack's 8 KB read buffer) is a call like any other.

use callflow_tests::{start_one_ua, start_one_ua_with};
use events::Outcome;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

/// A request from `from` (the test's socket) to the UA at `ua`, with `call_id`; `edit` changes
/// the text before it is sent.
fn request(method: &str, ua: &str, from: SocketAddr, call_id: &str, transport: &str) -> String {
    format!(
        "{method} sip:200@{ua} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK-{call_id}\r\nFrom: <sip:probe@{from}>;tag=p1\r\nTo: <sip:200@{ua}>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The malformed requests and what each must be answered (status, a piece of the Warning).
fn cases(ua: &str, from: SocketAddr, transport: &str) -> Vec<(String, u16, &'static str)> {
    let base = |id: &str| request("OPTIONS", ua, from, id, transport);
    let drop_line = |id: &str, line: &str| {
        base(id)
            .lines()
            .filter(|l| !l.starts_with(line))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    vec![
        (drop_line("m1", "Call-ID"), 400, "no Call-ID header"),
        (drop_line("m2", "CSeq"), 400, "no CSeq header"),
        (drop_line("m3", "From"), 400, "no From header"),
        (drop_line("m4", "To"), 400, "no To header"),
        (
            base("m5").replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS"),
            400,
            "is not a number",
        ),
        (
            base("m6").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            400,
            "names INVITE, the request is OPTIONS",
        ),
        (
            base("m8").replace(&format!("OPTIONS sip:200@{ua} "), "OPTIONS ::: "),
            400,
            "Request-URI",
        ),
        (
            base("m9").replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"),
            505,
            "SIP/3.0 is not supported",
        ),
        (
            request("FROBNICATE", ua, from, "m10", transport),
            501,
            "FROBNICATE is not implemented",
        ),
    ]
}

/// A callee that takes one call; long timeouts, as the test drives it by hand.
fn callee() -> scenario::Scenario {
    let text = "version: 1\nname: probed\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n";
    scenario::parse_str(text, "probed.yaml").expect("valid")
}

/// The status code and the Warning of a response.
fn status_and_warning(resp: &str) -> (u16, String) {
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let warning = resp
        .lines()
        .find(|l| l.starts_with("Warning:"))
        .unwrap_or("")
        .to_owned();
    (status, warning)
}

async fn recv(sock: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receives until a response with `status` arrives (skipping provisional ones).
async fn recv_status(sock: &tokio::net::UdpSocket, status: u16) -> String {
    loop {
        let r = recv(sock).await;
        if status_and_warning(&r).0 == status {
            return r;
        }
    }
}

/// The run, once it has ended (within 20 s).
async fn finish(run: tokio::task::JoinHandle<callflow_tests::Run>) -> callflow_tests::Run {
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the run ends")
        .expect("run")
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .map_or("", str::trim)
}

#[tokio::test]
async fn malformed_udp_requests_are_answered_and_a_9_kb_invite_is_a_call() {
    let (run, ua) = start_one_ua(callee()).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from = sock.local_addr().unwrap();
    for (text, status, warning) in cases(&ua, from, "UDP") {
        sock.send_to(text.as_bytes(), &ua).await.unwrap();
        let resp = recv(&sock).await;
        let (got, w) = status_and_warning(&resp);
        assert_eq!(got, status, "{text}\n->\n{resp}");
        assert!(w.contains(warning), "{w} / {warning}");
        // The answer routes back by the request's own Via and names its Call-ID.
        assert!(resp.contains(&format!("Via: SIP/2.0/UDP {from}")), "{resp}");
        if status == 501 {
            assert!(resp.contains("Allow: INVITE, ACK"), "{resp}");
        }
    }
    // A Content-Length larger than the body.
    let short = request("OPTIONS", &ua, from, "m11", "UDP")
        .replace("Content-Length: 0", "Content-Length: 40");
    sock.send_to(short.as_bytes(), &ua).await.unwrap();
    let (got, w) = status_and_warning(&recv(&sock).await);
    assert_eq!(got, 400);
    assert!(
        w.contains("Content-Length is 40 but the body has 0 bytes"),
        "{w}"
    );
    // A malformed ACK is never answered: the next answer is to the OPTIONS after it.
    let ack = request("ACK", &ua, from, "m12", "UDP").replace("Call-ID: m12\r\n", "");
    sock.send_to(ack.as_bytes(), &ua).await.unwrap();
    let ok = request("OPTIONS", &ua, from, "m13", "UDP");
    sock.send_to(ok.as_bytes(), &ua).await.unwrap();
    let resp = recv(&sock).await;
    assert_eq!(status_and_warning(&resp).0, 200, "{resp}");
    assert_eq!(header(&resp, "Call-ID"), "m13");

    // A 9 KB INVITE: its padding header takes it past rsipstack's 8 KB read buffer.
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        from.port() + 2
    );
    let invite = request("INVITE", &ua, from, "big-1", "UDP")
        .replace(
            "Max-Forwards: 70\r\n",
            &format!(
                "Max-Forwards: 70\r\nContact: <sip:probe@{from}>\r\nContent-Type: application/sdp\r\nX-Padding: {}\r\n",
                "x".repeat(9000)
            ),
        )
        .replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
    assert!(invite.len() > 9 * 1024);
    sock.send_to(invite.as_bytes(), &ua).await.unwrap();
    let ok = recv_status(&sock, 200).await;
    assert_eq!(header(&ok, "Call-ID"), "big-1");
    let to = header(&ok, "To").to_owned();
    let contact = header(&ok, "Contact")
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{branch}\r\nFrom: <sip:probe@{from}>;tag=p1\r\nTo: {to}\r\nCall-ID: big-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    sock.send_to(in_dialog("ACK", 1, "ack").as_bytes(), &ua)
        .await
        .unwrap();
    sock.send_to(in_dialog("BYE", 2, "bye").as_bytes(), &ua)
        .await
        .unwrap();
    let bye_ok = recv_status(&sock, 200).await;
    assert!(header(&bye_ok, "CSeq").ends_with("BYE"), "{bye_ok}");
    let run = finish(run).await;
    run.assert_outcome(Outcome::Passed);
    // The refusals are on the record, as any other message.
    let bob = run.wire("bob");
    assert!(bob.contains(&">400".to_owned()), "{bob:?}");
    assert!(bob.contains(&">505".to_owned()), "{bob:?}");
    run.assert_clean();
}

#[tokio::test]
async fn malformed_tcp_requests_are_answered_on_their_connection() {
    let text = "version: 1\nname: probed over tcp\ninstances:\n  bob:\n    dn: \"200\"\n    transport: tcp\n    steps:\n      - event: INCOMING\n        timeout: 3s\n";
    let s = scenario::parse_str(text, "probed-tcp.yaml").expect("valid");
    let (run, ua) = start_one_ua(s).await;
    let mut conn = tokio::net::TcpStream::connect(&ua).await.unwrap();
    let from = conn.local_addr().unwrap();
    // Each case rsipstack's stream parser can read: it closes a connection with a message it
    // cannot parse (another SIP version, an unknown method, a bad Request-URI), before callflow
    // sees it. Those go as UDP above.
    for (text, status, warning) in cases(&ua, from, "TCP")
        .into_iter()
        .filter(|(_, s, _)| *s != 505 && *s != 501)
        .filter(|(t, _, _)| !t.starts_with("OPTIONS ::: "))
    {
        conn.write_all(text.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (got, w) = status_and_warning(&resp);
        assert_eq!(got, status, "{text}\n->\n{resp}");
        assert!(w.contains(warning), "{w} / {warning}");
    }
    drop(conn);
    let run = finish(run).await;
    // Nobody called: INCOMING times out, and everything is cleaned up.
    run.assert_outcome(Outcome::Failed);
    run.assert_clean();
}

#[tokio::test]
async fn an_invite_no_node_takes_is_answered_480_after_the_hold() {
    // bob waits on a timer and never takes a call.
    let text = "version: 1\nname: busy elsewhere\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: TIMEOUT\n        timeout: 3s\n";
    let s = scenario::parse_str(text, "unclaimed.yaml").expect("valid");
    let limits = orchestrator::Limits {
        unclaimed_invite: Duration::from_millis(500),
        ..Default::default()
    };
    let (run, ua) = start_one_ua_with(s, limits).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from = sock.local_addr().unwrap();
    let invite = request("INVITE", &ua, from, "unclaimed-1", "UDP").replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nContact: <sip:probe@{from}>\r\n"),
    );
    sock.send_to(invite.as_bytes(), &ua).await.unwrap();
    let refused = recv_status(&sock, 480).await;
    assert_eq!(header(&refused, "Call-ID"), "unclaimed-1");
    let to = header(&refused, "To").to_owned();
    let ack = request("ACK", &ua, from, "unclaimed-1", "UDP")
        .replace(&format!("To: <sip:200@{ua}>"), &format!("To: {to}"));
    sock.send_to(ack.as_bytes(), &ua).await.unwrap();
    let run = finish(run).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_clean();
}

#[tokio::test]
async fn tcp_connections_past_the_cap_close_the_idlest() {
    let text = "version: 1\nname: tcp cap\ninstances:\n  bob:\n    dn: \"200\"\n    transport: tcp\n    steps:\n      - event: TIMEOUT\n        timeout: 3s\n";
    let s = scenario::parse_str(text, "tcp-cap.yaml").expect("valid");
    let limits = orchestrator::Limits {
        max_tcp_connections: 4,
        ..Default::default()
    };
    let (run, ua) = start_one_ua_with(s, limits).await;
    // Two idle connections, then four that each send a request (and so are active).
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(&ua).await.unwrap());
    }
    let mut active = Vec::new();
    for i in 0..4 {
        let mut c = tokio::net::TcpStream::connect(&ua).await.unwrap();
        let from = c.local_addr().unwrap();
        c.write_all(request("OPTIONS", &ua, from, &format!("cap-{i}"), "TCP").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
        active.push(c);
    }
    // The two idle ones were closed by the UA (EOF), the active ones were not.
    for mut c in idle {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("closed within 5 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "an idle connection past the cap is closed");
    }
    drop(active);
    let run = finish(run).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_clean();
}
