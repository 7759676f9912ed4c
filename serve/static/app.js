// vtg web page: pick or upload a video, ask a query, draw the ranked moments on a timeline; click one to seek.
"use strict";
const $ = (id) => document.getElementById(id);
const player = $("player"), timeline = $("timeline"), statusEl = $("status");
let duration = 0;

$("apikey").value = localStorage.getItem("vtg_api_key") || "";
$("apikey").addEventListener("change", () => { localStorage.setItem("vtg_api_key", $("apikey").value); loadVideos(); });

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("apikey").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function say(text, isError) { statusEl.textContent = text; statusEl.className = isError ? "error" : ""; }

async function call(method, url, body, contentType) {
  const resp = await fetch(url, { method, headers: headers(contentType ? { "Content-Type": contentType } : {}), body });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((data.error && data.error.message) || ("HTTP " + resp.status));
  return data;
}

const mediaUrls = {};  // video url -> where the page loads it (signed by the server when it has a key)

function selectVideo(url) {
  player.src = mediaUrls[url];
  clearResults();
}

async function loadVideos() {
  try {
    const [models, list] = await Promise.all([call("GET", "/v1/models"), call("GET", "/v1/videos")]);
    $("model").textContent = "model: " + models.data.map((m) => m.id).join(", ");
    const sel = $("videos");
    sel.length = 1;
    for (const v of list.data) { sel.add(new Option(v.name, v.url)); mediaUrls[v.url] = v.media_url; }
    say(list.data.length + " videos available");
  } catch (e) { say(e.message, true); }
}

$("videos").addEventListener("change", (ev) => { if (ev.target.value) selectVideo(ev.target.value); });

$("upload").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  say("uploading " + file.name + " …");
  try {
    const up = await call("POST", "/v1/uploads?filename=" + encodeURIComponent(file.name), file, "application/octet-stream");
    const sel = $("videos");
    mediaUrls[up.url] = up.media_url;
    sel.add(new Option("uploaded: " + file.name, up.url));
    sel.value = up.url;
    selectVideo(up.url);
    say("uploaded " + file.name);
  } catch (e) { say(e.message, true); }
});

function clearResults() {
  for (const el of timeline.querySelectorAll(".moment")) el.remove();
  $("moments").innerHTML = "";
  $("reasoning").textContent = "";
}

function seek(t) {
  player.currentTime = t;
  player.dataset.seekedTo = String(t);
}

function draw(result) {
  clearResults();
  duration = result.duration || player.duration || 1;
  result.moments.forEach((m, i) => {
    const box = document.createElement("div");
    box.className = "moment";
    box.dataset.start = m.start;
    box.style.left = (100 * m.start / duration) + "%";
    box.style.width = (100 * (m.end - m.start) / duration) + "%";
    box.title = `#${i + 1}: ${m.start.toFixed(1)}–${m.end.toFixed(1)} s (score ${m.score.toFixed(2)})`;
    box.addEventListener("click", () => seek(m.start));
    timeline.appendChild(box);
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.textContent = box.title.slice(box.title.indexOf(":") + 2);
    b.addEventListener("click", () => seek(m.start));
    li.appendChild(b);
    $("moments").appendChild(li);
  });
  $("reasoning").textContent = result.reasoning || "(no reasoning)";
  const np = result.not_present_score ? ` — ${(100 * result.not_present_score).toFixed(0)}% of samples: not present` : "";
  say(`${result.moments.length} moment(s)${np}`);
}

$("ground").addEventListener("click", async () => {
  const video = $("videos").value, query = $("query").value.trim();
  if (!video || !query) { say("pick a video and type a query", true); return; }
  say("grounding …");
  try {
    const body = JSON.stringify({ video, query, mode: $("mode").value, top_k: Number($("topk").value) || 5,
                                 constrained: $("constrained").checked });
    draw(await call("POST", "/v1/grounding", body, "application/json"));
  } catch (e) { say(e.message, true); }
});

player.addEventListener("timeupdate", () => {
  if (document.body.dataset.mode === "live") return;  // live.js moves the cursor
  const d = duration || player.duration;
  if (d) $("cursor").style.left = (100 * player.currentTime / d) + "%";
});

loadVideos();
