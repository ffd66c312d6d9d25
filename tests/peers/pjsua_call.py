#!/usr/bin/env python3
"""A pjsua2 phone (PJSIP, PyPI pjsua2-python) that calls TARGET, for callflow's peer tests.

It requires reliable provisional responses (Require: 100rel) and a session timer
(Session-Expires 90, Require/Supported: timer), waits for the call to be confirmed, holds it
for HOLD seconds, hangs up, and prints one line per thing it saw:
  state CONFIRMED / state DISCONNCTD, sip <status> ..., done <0|1>
Exits 0 once the call was confirmed and ended, 1 otherwise, within TIMEOUT seconds.
FLAGS (comma-separated) adds: `tls` (the call goes over a TLS transport, the server's
certificate not verified), `srtp` (SRTP mandatory, RTP/SAVP with SDES keys).

usage: pjsua_call.py TARGET [HOLD] [TIMEOUT] [FLAGS]
"""
import sys
import time

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, acc):
        super().__init__(acc)
        self.confirmed = False
        self.ended = False

    def onCallState(self, prm):
        ci = self.getInfo()
        print(f"state {ci.stateText} {ci.lastStatusCode} {ci.lastReason}", flush=True)
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True

    def onCallTsxState(self, prm):
        e = prm.e
        if e.type == pj.PJSIP_EVENT_TSX_STATE:
            tsx = e.body.tsxState.tsx
            print(f"tsx {tsx.method} {tsx.statusCode} {tsx.role}", flush=True)


def main():
    target = sys.argv[1]
    hold = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    flags = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else set()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    if "tls" in flags:
        tls = pj.TransportConfig()
        tls.port = 0
        tls.boundAddress = "127.0.0.1"
        tls.tlsConfig.verifyServer = False
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
    ep.libStart()
    ep.audDevManager().setNullDev()

    acfg = pj.AccountConfig()
    acfg.idUri = "sip:pjsua@127.0.0.1"
    acfg.callConfig.prackUse = pj.PJSUA_100REL_MANDATORY
    acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_REQUIRED
    acfg.callConfig.timerSessExpiresSec = 90
    acfg.callConfig.timerMinSESec = 90
    # Media on loopback only (by default PJSIP names the host's own address in its SDP).
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    if "srtp" in flags:
        acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
        acfg.mediaConfig.srtpSecureSignaling = 0
    acc = pj.Account()
    acc.create(acfg)

    call = Call(acc)
    prm = pj.CallOpParam(True)
    call.makeCall(target, prm)

    deadline = time.monotonic() + timeout
    confirmed_at = None
    hung_up = False
    while time.monotonic() < deadline and not call.ended:
        ep.libHandleEvents(20)
        if call.confirmed and confirmed_at is None:
            confirmed_at = time.monotonic()
        if confirmed_at and not hung_up and time.monotonic() - confirmed_at >= hold:
            call.hangup(pj.CallOpParam())
            hung_up = True
    ok = call.confirmed and call.ended
    print(f"done {0 if ok else 1}", flush=True)
    del call
    ep.libDestroy()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
