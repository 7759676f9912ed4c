// vtg web page, live mode: play a local file (or the camera) here, send its frames over the /v1/streams WebSocket
// and draw the moments on the timeline as the server announces them (docs/serving.md#streams).
// Uses app.js's $, say, player, timeline and clearResults.
"use strict";
const MAX_SIDE = 640;  // frames are scaled down to this longest side before JPEG encoding (the model sees less)
const MAX_BUFFERED = 2 * 1024 * 1024;  // a frame is dropped while this much is still unsent (slow link: no backlog)
const LOG_LINES = 200;

const live = {  // the session's state; tests read it (window.live)
  state: "idle",  // idle | connecting | running | closing | closed
  ws: null, stream: null, timer: null, canvas: document.createElement("canvas"),
  session: null, fps: 2, t0: 0, nextT: null, lastSent: null,
  sent: 0, dropped: 0, progress: null, errors: [], events: 0, closed: null,  // closed: the session.closed event
  queries: {},  // id -> text
  moments: {},  // moment_id -> {query_id, start, end, score, ongoing}
  scale: 30,  // seconds the timeline spans (a file: its duration; the camera: grows)
};
window.live = live;

function setMode(mode) {
  if (mode !== "live" && live.state !== "idle" && live.state !== "closed") stopLive();
  document.body.dataset.mode = mode;
  $("tab-file").classList.toggle("on", mode !== "live");
  $("tab-live").classList.toggle("on", mode === "live");
  clearResults();
  player.pause();
  player.srcObject = null;
  player.removeAttribute("src");
  player.load();
  $("processed").style.width = "0";
  $("cursor").style.left = "0";
  say(mode === "live" ? "live: pick a file or the camera, type queries, press Start" : "");
}
$("tab-file").addEventListener("click", () => setMode("file"));
$("tab-live").addEventListener("click", () => setMode("live"));

$("live-file").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  $("live-source").value = "file";
  player.srcObject = null;
  if (player.src.startsWith("blob:")) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(file);
});

function logLine(text, cls) {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  const log = $("live-log");
  log.prepend(li);
  while (log.children.length > LOG_LINES) log.lastChild.remove();
}

function fail(message) {
  live.errors.push(message);
  say(message, true);
  logLine("error: " + message, "error");
}

function mediaTime() {  // a file: where it plays; the camera: seconds since Start
  return live.stream ? (performance.now() - live.t0) / 1000 : player.currentTime;
}

function send(event) {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(event));
}

async function startLive() {
  const texts = $("live-queries").value.split("\n").map((q) => q.trim()).filter(Boolean);
  if (!texts.length) { say("type at least one query", true); return; }
  let options = {};
  try { options = $("live-options").value.trim() ? JSON.parse($("live-options").value) : {}; }
  catch (e) { say("options: not JSON: " + e.message, true); return; }
  const camera = $("live-source").value === "camera";
  try {
    if (camera) {
      live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
      player.srcObject = live.stream;  // over the file's src, which stays for a later run
    } else {
      live.stream = null;
      player.srcObject = null;
      if (!player.src.startsWith("blob:")) { say("pick a local file first (or the camera)", true); return; }
      player.currentTime = 0;
    }
  } catch (e) { say("camera: " + e.message, true); return; }
  Object.assign(live, { state: "connecting", session: null, nextT: null, lastSent: null, sent: 0, dropped: 0,
                        progress: null, errors: [], events: 0, queries: {}, moments: {}, scale: 30,
                        closed: null });
  clearResults();
  $("live-log").innerHTML = "";
  $("live-queries-active").innerHTML = "";
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  // A browser cannot set headers on a WebSocket: the key travels as a subprotocol entry, never in the URL.
  const key = $("apikey").value.trim();
  const protocols = ["vtg.v1"].concat(key ? ["vtg-api-key." + key] : []);
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/v1/streams", protocols);
  live.ws = ws;
  say("connecting …");
  ws.onopen = () => send({ type: "session.create", session: { queries: texts.map((text) => ({ text })), options } });
  ws.onmessage = (msg) => onEvent(JSON.parse(msg.data));
  ws.onclose = (ev) => {
    if (live.ws !== ws) return;
    if (live.state !== "closing" && live.state !== "closed") {
      fail(`connection closed by the server (${ev.code}${ev.reason ? ": " + ev.reason : ""})`);
    }
    finish();
  };
}

function onEvent(ev) {
  live.events++;
  const t = ev.media_time !== undefined ? ` @${Number(ev.media_time).toFixed(1)} s` : "";
  switch (ev.type) {
    case "session.created": {
      live.session = ev.session;
      live.fps = ev.session.fps || 2;
      for (const q of ev.session.queries) addQuery(q);
      live.state = "running";
      live.t0 = performance.now();
      logLine(`session.created ${ev.session.id}: ${live.fps} fps, window ${ev.session.window_s} s, ` +
              `stride ${ev.session.stride_s} s`);
      say("live: streaming");
      $("live-add").disabled = $("live-add-btn").disabled = false;
      player.play().catch((e) => fail("cannot play: " + e.message));
      live.timer = setInterval(tick, Math.max(20, 250 / live.fps));
      break;
    }
    case "moment.started": case "moment.updated": case "moment.ended":
      live.moments[ev.moment_id] = Object.assign({ query_id: ev.query_id, ongoing: ev.ongoing }, ev.moment);
      logLine(`${ev.type} ${live.queries[ev.query_id] || ev.query_id}: ${ev.moment.start.toFixed(1)}–` +
              `${ev.moment.end === null ? "…" : ev.moment.end.toFixed(1)} s (score ${ev.moment.score.toFixed(2)})${t}`,
              "event-moment");
      render();
      break;
    case "progress":
      live.progress = ev;
      render();
      break;
    case "query.added": addQuery(ev.query); logLine(`query.added ${ev.query.id}: ${ev.query.text}`); break;
    case "query.removed": {
      const li = document.querySelector(`#live-queries-active li[data-id="${CSS.escape(ev.query_id)}"]`);
      if (li) li.classList.add("removed");
      logLine("query.removed " + ev.query_id);
      break;
    }
    case "error": {
      const e = ev.error || {};
      fail((e.message || "error") + (e.media_time !== undefined ? ` (frame at ${e.media_time} s)` : ""));
      if (live.state === "connecting") { live.state = "closed"; live.ws.close(1000); finish(); }  // not created
      break;
    }
    case "session.closed":
      logLine(`session.closed: ${ev.windows} windows, ${ev.skipped} skipped${t}`);
      live.state = "closed";
      live.closed = ev;
      live.ws.close(1000);
      finish();
      say(`live: closed — ${Object.keys(live.moments).length} moment(s)`, live.errors.length > 0);
      break;
    default:
      logLine(ev.type + t);
  }
}

function addQuery(q) {
  live.queries[q.id] = q.text;
  const li = document.createElement("li");
  li.dataset.id = q.id;
  li.style.borderColor = color(q.id);
  li.textContent = q.text + " ";
  const x = document.createElement("button");
  x.type = "button";
  x.textContent = "remove";
  x.addEventListener("click", () => { send({ type: "query.remove", query_id: q.id }); x.disabled = true; });
  li.appendChild(x);
  $("live-queries-active").appendChild(li);
}

$("live-add-btn").addEventListener("click", () => {
  const text = $("live-add").value.trim();
  if (text) send({ type: "query.add", query: { text } });
  $("live-add").value = "";
});

function color(queryId) {
  const i = Object.keys(live.queries).indexOf(queryId);
  return `hsl(${(10 + 67 * Math.max(i, 0)) % 360}, 70%, 45%)`;
}

// Send a frame at each tick of the session's frame-rate grid (the first frame at or after it), as the server keeps
// them (vtg.stream.FrameRing), so every frame sent is one the model sees.
function tick() {
  if (live.state !== "running") return;
  const t = mediaTime();
  render();
  if (player.readyState < 2 || !player.videoWidth || (live.lastSent !== null && t <= live.lastSent)) return;
  if (live.nextT !== null && t < live.nextT - 1e-3) return;
  const step = 1 / live.fps;
  live.nextT = (live.nextT === null ? t : live.nextT) + step;
  if (live.nextT <= t) live.nextT = t + step;  // a gap (paused, slow tab): the grid restarts after it
  if (live.ws.bufferedAmount > MAX_BUFFERED) { live.dropped++; return; }
  const k = Math.min(1, MAX_SIDE / Math.max(player.videoWidth, player.videoHeight));
  const c = live.canvas;
  c.width = Math.round(player.videoWidth * k);
  c.height = Math.round(player.videoHeight * k);
  c.getContext("2d").drawImage(player, 0, 0, c.width, c.height);
  send({ type: "frame.append", frame: { image: c.toDataURL("image/jpeg", 0.85), media_time: t } });
  live.sent++;
  live.lastSent = t;
}

player.addEventListener("ended", () => { if (live.state === "running" && !live.stream) stopLive(); });

function render() {
  const now = live.lastSent || 0;
  const d = !live.stream && isFinite(player.duration) && player.duration > 0 ? player.duration : 0;
  live.scale = d || Math.max(live.scale, 30);
  while (!d && now > live.scale) live.scale *= 2;  // the camera: the timeline zooms out as the stream grows
  const pct = (x) => (100 * Math.min(x, live.scale) / live.scale) + "%";
  $("cursor").style.left = pct(now);
  const p = live.progress;
  const answered = p ? Math.max(0, p.media_time - p.lag) : 0;  // the last answered window's end
  $("processed").style.width = pct(answered);
  for (const [id, m] of Object.entries(live.moments)) {
    let box = timeline.querySelector(`.moment[data-id="${id}"]`);
    if (!box) {
      box = document.createElement("div");
      box.className = "moment";
      box.dataset.id = id;
      box.style.background = color(m.query_id);
      box.addEventListener("click", () => { if (!live.stream) player.currentTime = m.start; });
      timeline.appendChild(box);
    }
    const end = m.end === null ? Math.max(now, m.start) : m.end;  // an ongoing moment grows with the playhead
    box.classList.toggle("ongoing", m.end === null);
    box.dataset.start = m.start;
    box.style.left = pct(m.start);
    box.style.width = `calc(${pct(end)} - ${pct(m.start)})`;
    box.title = `${live.queries[m.query_id] || m.query_id}: ${m.start.toFixed(1)}–` +
                `${m.end === null ? "(ongoing)" : m.end.toFixed(1)} s, score ${m.score.toFixed(2)}`;
  }
  $("live-progress").textContent = `sent ${live.sent} frames to ${now.toFixed(1)} s` +
    (live.dropped ? ` (${live.dropped} dropped: slow link)` : "") +
    (p ? ` · answered to ${answered.toFixed(1)} s · lag ${p.lag.toFixed(1)} s · windows ${p.windows}` +
         ` (${p.skipped} skipped)` : " · waiting for the first window");
}

function stopLive() {
  if (live.state === "running" || live.state === "connecting") {
    live.state = "closing";
    say("closing …");
    clearInterval(live.timer);
    player.pause();
    if (live.ws && live.ws.readyState === WebSocket.OPEN) send({ type: "session.close" });
    else finish();
  }
}
$("live-start").addEventListener("click", startLive);
$("live-stop").addEventListener("click", stopLive);

function finish() {
  clearInterval(live.timer);
  if (live.state !== "closed") live.state = "closed";
  if (live.stream) { for (const track of live.stream.getTracks()) track.stop(); }
  player.pause();
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
  $("live-add").disabled = $("live-add-btn").disabled = true;
  render();
}
