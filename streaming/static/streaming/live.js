// Live cost of a session over /ws/streams/<sessionId>/ (the messages: README, "WebSockets").
// On /live/ the browser signs in through the API and keeps the token in sessionStorage; on a
// session's admin page the socket rides on the admin's session cookie. No build step, no library.
"use strict";

(function () {
  const TOKEN_KEY = "paygo.token";
  const WHO_KEY = "paygo.who";
  const HEARTBEAT_MS = 5000; // a message from the session's user is a sign of life

  const panel = document.getElementById("live-cost");
  if (!panel) return;
  const sessionId = panel.dataset.sessionId;
  const byToken = panel.dataset.auth === "token";
  const field = (name, root) => (root || document).querySelector(`[data-field="${name}"]`);
  const show = (id, visible) => { const el = document.getElementById(id); if (el) el.hidden = !visible; };
  const set = (name, text) => { const el = field(name); if (el) el.textContent = text; };
  let socket = null;
  let stopped = false;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
  }

  function event(text, className) {
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} · ${text}`;
    if (className) item.className = className;
    field("events").prepend(item);
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  async function api(method, path, body, extraHeaders) {
    const headers = { Accept: "application/json", ...(extraHeaders || {}) };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const data = await response.json().catch(() => ({}));
    if (response.status === 401 && byToken && token()) signOut("Your sign-in has expired: sign in again.");
    return { ok: response.ok, status: response.status, data };
  }

  function onMessage(message) {
    const unit = panel.dataset.token ? ` ${panel.dataset.token}` : "";
    switch (message.type) {
      case "cost.tick":
        if (!stopped) set("status", "running");
        set("elapsed", duration(message.elapsedSeconds));
        set("estimatedCost", message.estimatedCost + unit);
        set("charged", message.charged + unit);
        if ("balance" in message) set("balance", message.balance + unit);
        if ("runwaySeconds" in message) set("runway", duration(message.runwaySeconds));
        panel.dataset.ticks = String(Number(panel.dataset.ticks || 0) + 1);
        break;
      case "cost.charged":
        set("charged", message.charged + unit);
        if ("balance" in message) set("balance", message.balance + unit);
        if ("runwaySeconds" in message) set("runway", duration(message.runwaySeconds));
        event(`charged ${message.amount}${unit} (billed up to ${new Date(message.chargedUntil).toLocaleTimeString()})`);
        break;
      case "balance.low":
        set("runway", duration(message.runwaySeconds));
        event(`low balance: about ${duration(message.runwaySeconds)} left`, "low");
        break;
      case "session.stopped": {
        stopped = true;
        set("status", `stopped (${message.reason})`);
        set("estimatedCost", message.totalCost + unit);
        set("charged", message.totalCost + unit);
        event(`session stopped (${message.reason}); it cost ${message.totalCost}${unit}`);
        const stop = document.getElementById("stop");
        if (stop) stop.disabled = true;
        break;
      }
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/streams/${sessionId}/`;
    // The token as a subprotocol keeps it out of URLs (and so out of logs).
    socket = byToken ? new WebSocket(url, [`bearer.${token()}`]) : new WebSocket(url);
    let heartbeat = null;
    socket.onopen = () => {
      set("status", "connected");
      if (byToken) heartbeat = setInterval(() => socket.send(JSON.stringify({ type: "ping" })), HEARTBEAT_MS);
    };
    socket.onmessage = (frame) => onMessage(JSON.parse(frame.data));
    socket.onclose = (close) => {
      clearInterval(heartbeat);
      if (close.code === 4401) return byToken ? signOut("Your sign-in has expired: sign in again.") : set("status", "not signed in");
      if (close.code === 4403) return set("status", "not yours to watch");
      if (close.code === 4404) return set("status", "no such socket");
      if (!stopped) {
        set("status", "disconnected: reconnecting…");
        setTimeout(connect, 3000);
      }
    };
  }

  async function stopSession() {
    const button = document.getElementById("stop");
    button.disabled = true;
    const key = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
    const answer = await api("PATCH", `/api/v1/streams/${sessionId}/stop`, null, { "Idempotency-Key": key });
    if (!answer.ok) {
      button.disabled = false;
      set("stopError", answer.data.message || `The stop failed (${answer.status}).`);
    }
  }

  async function watch() {
    show("watch", true);
    const answer = await api("GET", `/api/v1/streams/${sessionId}`);
    if (answer.ok) {
      const session = answer.data.session;
      panel.dataset.token = session.token;
      set("title", session.service.name);
      set("price", `${session.rate} ${session.token} ${session.unit.replace("_", " ")} · started ${new Date(session.startTime).toLocaleString()}`);
      stopped = session.status !== "active";
      if (stopped) set("status", `${session.status} (${session.stopReason})`);
      document.getElementById("stop").disabled = stopped;
    } else if (answer.status === 404) {
      return set("status", "no such session among yours");
    }
    connect();
  }

  async function listSessions() {
    show("sessions", true);
    const answer = await api("GET", "/api/v1/streams/active");
    if (!answer.ok) return;
    const list = field("sessionList");
    list.replaceChildren();
    for (const session of answer.data.sessions) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/live/${session.id}/`;
      link.textContent = `${session.service.name} · ${session.rate} ${session.token} ${session.unit.replace("_", " ")}`;
      item.append(link, ` · started ${new Date(session.startTime).toLocaleString()}`);
      list.append(item);
    }
    field("noSessions").hidden = answer.data.sessions.length > 0;
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(WHO_KEY);
    if (socket) { stopped = true; socket.close(); }
    show("signed-in", false);
    show("sign-in", true);
    set("signInError", reason || "");
  }

  function signedIn() {
    show("sign-in", false);
    show("signed-in", true);
    set("who", sessionStorage.getItem(WHO_KEY) || "");
    return sessionId ? watch() : listSessions();
  }

  if (!byToken) return connect(); // the admin's page: its session cookie goes with the socket

  document.getElementById("sign-in").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const form = new FormData(submit.target);
    const answer = await api("POST", "/api/v1/auth/login", { email: form.get("email"), password: form.get("password") });
    if (!answer.ok) return set("signInError", answer.data.message || "Could not sign in.");
    sessionStorage.setItem(TOKEN_KEY, answer.data.token);
    sessionStorage.setItem(WHO_KEY, `${answer.data.user.name} <${answer.data.user.email}>`);
    submit.target.reset();
    signedIn();
  });
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  document.getElementById("stop").addEventListener("click", stopSession);
  if (token()) signedIn(); else signOut();
})();
