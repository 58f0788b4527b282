// Tessera playground: talks to the public API only, with the key the user gives.
// Plain ES module, no build step.

const BASE = location.pathname.replace(/playground\/?[^/]*$/, "");
const API = new URL(BASE, location.origin).href; // ends with "/"
const EDIT_TASKS = ["image-to-image", "inpaint", "edit"];
const $ = (id) => document.getElementById(id);
const state = { models: [], mode: "generate", image: null, maskDirty: false, lang: "curl" };

// ------------------------------------------------------------------ API access

function key() { return localStorage.getItem("tessera-key") || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${key()}`, ...(options.headers || {}) };
  if (options.body) headers["Content-Type"] = "application/json";
  const r = await fetch(API + path, { ...options, headers });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (r.status === 401) {
    keyMessage("The API key was refused (401 invalid_api_key): check it and save it again.", true);
  }
  if (!r.ok) {
    const err = body?.error || {};
    throw new Error(err.message ? `${err.message}${err.code ? ` (${err.code})` : ""}` : `HTTP ${r.status}`);
  }
  return body;
}

function keyMessage(text, bad = false) {
  const el = $("key-message");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

// ------------------------------------------------------------------ models and parameters

function modelTasks(m) {
  return {
    t2i: m.tasks.includes("text-to-image"),
    edit: m.tasks.some((t) => EDIT_TASKS.includes(t)),
    up: m.tasks.includes("upscale"),
  };
}

// what each mode's models must do, and the route its requests go to
const MODES = {
  generate: { can: (m) => modelTasks(m).t2i, route: "v1/images/generations" },
  edit: { can: (m) => modelTasks(m).edit, route: "v1/images/edits" },
  upscale: { can: (m) => modelTasks(m).up, route: "v1/images/upscale" },
};

async function loadModels() {
  if (!key()) { keyMessage("Enter your API key to start."); return; }
  try {
    const list = await api("v1/models");
    state.models = list.data.filter((m) => m.available !== false);
    fillLoraModels();
    keyMessage(`Key saved. ${state.models.length} models can run here.`);
    fillModelSelects();
  } catch (e) {
    if (!$("key-message").classList.contains("bad")) keyMessage(e.message, true);
  }
}

function fillModelSelects() {
  const selects = [$("model"), ...document.querySelectorAll(".compare-model")];
  selects.forEach((select, i) => {
    const previous = select.value;
    select.replaceChildren();
    if (i >= 2) select.append(new Option("(none)", ""));
    // each model once, under its own task; those that cannot do this mode's task are greyed
    for (const [label, test] of [["text-to-image", (m) => modelTasks(m).t2i],
                                 ["image-to-image", (m) => !modelTasks(m).t2i && modelTasks(m).edit],
                                 ["upscale", (m) => modelTasks(m).up]]) {
      const group = document.createElement("optgroup");
      group.label = label;
      for (const m of state.models.filter(test)) {
        const option = new Option(m.id, m.id);
        option.disabled = !MODES[state.mode].can(m);
        group.append(option);
      }
      select.append(group);
    }
    const usable = [...select.options].filter((o) => !o.disabled && o.value);
    if ([...select.options].some((o) => o.value === previous && !o.disabled)) select.value = previous;
    else if (i < 2 && usable.length) select.value = usable[Math.min(i, usable.length - 1)].value;
    else if (i >= 2) select.value = "";
  });
  applyModel();
}

function currentModel() { return state.models.find((m) => m.id === $("model").value); }

function applyModel() {
  const m = currentModel();
  if (!m) return;
  const p = m.parameters;
  $("steps").value = p.num_inference_steps;
  $("steps").max = p.max_steps;
  $("guidance-row").hidden = p.guidance_scale === null;
  if (p.guidance_scale !== null) {
    $("guidance").value = p.guidance_scale;
    $("guidance").max = p.max_guidance_scale;
  }
  const upscale = state.mode === "upscale";
  $("negative-row").hidden = !p.negative_prompt || !p.prompt;
  $("adapters-row").hidden = !m.supports_loras || upscale;
  // an upscale's size is the input's times the model's factor; some upscalers read no prompt
  $("prompt-row").hidden = !p.prompt;
  $("steps-row").hidden = p.max_steps <= 1;
  for (const id of ["size-row", "count-row"]) $(id).hidden = upscale;
  $("upscale-factor").hidden = !upscale;
  $("upscale-factor").textContent = upscale && p.upscale_factor
    ? `×${p.upscale_factor}: the output is ${p.upscale_factor} times the input's width and height` : "";
  for (const id of ["width", "height"]) {
    $(id).min = p.min_side; $(id).max = p.max_side;
  }
  const presets = [[p.width, p.height], [512, 512], [768, 768], [1024, 1024], [1024, 768], [768, 1024]]
    .filter(([w, h]) => w <= p.max_side && h <= p.max_side && w * h <= p.max_pixels);
  const size = $("size");
  size.replaceChildren();
  for (const [w, h] of presets) {
    const value = `${w}x${h}`;
    if (![...size.options].some((o) => o.value === value)) size.append(new Option(`${w} × ${h}`, value));
  }
  size.append(new Option("Custom…", "custom"));
  $("width").value = p.width; $("height").value = p.height;
  $("custom-size").hidden = true;
  updateCode();
}

// ------------------------------------------------------------------ the request

function sizeValue() {
  if ($("size").value === "custom") return `${$("width").value}x${$("height").value}`;
  return $("size").value;
}

function requestBody(model) {
  const m = state.models.find((x) => x.id === model);
  if (state.mode === "upscale") {
    const body = { model };
    if (!$("prompt-row").hidden && $("prompt").value.trim()) body.prompt = $("prompt").value;
    if (!$("negative-row").hidden && $("negative").value.trim()) body.negative_prompt = $("negative").value;
    if (!$("steps-row").hidden && $("steps").value) body.num_inference_steps = Number($("steps").value);
    if (!$("guidance-row").hidden && $("guidance").value !== "") body.guidance_scale = Number($("guidance").value);
    if ($("seed").value !== "") body.seed = Number($("seed").value);
    body.output_format = $("format").value;
    return body;
  }
  const body = { model, prompt: $("prompt").value };
  if (!$("negative-row").hidden && $("negative").value.trim()) body.negative_prompt = $("negative").value;
  if (state.mode === "generate" || $("size").value === "custom") body.size = sizeValue();
  if ($("steps").value) body.num_inference_steps = Number($("steps").value);
  if (!$("guidance-row").hidden && $("guidance").value !== "" && m?.parameters.guidance_scale !== null) {
    body.guidance_scale = Number($("guidance").value);
  }
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  body.n = Number($("count").value || 1);
  body.output_format = $("format").value;
  if (state.mode === "edit") body.strength = Number($("strength").value);
  const loras = adapterValues();
  if (loras.length && !$("adapters-row").hidden) body.loras = loras;
  return body;
}

// ------------------------------------------------------------------ LoRA adapters

function adapterValues() {
  return [...document.querySelectorAll("#adapters li")]
    .map((li) => ({ path: li.querySelector(".adapter-path").value.trim(), scale: Number(li.querySelector(".adapter-scale").value) }))
    .filter((a) => a.path);
}

function addAdapter(path = "", scale = 1) {
  const list = $("adapters");
  if (list.children.length >= 4) return;
  const n = list.children.length + 1;
  const li = document.createElement("li");
  li.innerHTML = `<label>Adapter <input class="adapter-path" list="lora-models" placeholder="https://…/style.safetensors"></label>
    <label>Scale <input class="adapter-scale" type="number" min="-2" max="2" step="0.1"></label>
    <button type="button" class="remove-adapter">Remove</button>`;
  li.querySelector(".adapter-path").value = path;
  li.querySelector(".adapter-path").setAttribute("aria-label", `Adapter ${n}`);
  li.querySelector(".adapter-scale").value = scale;
  li.querySelector(".adapter-scale").setAttribute("aria-label", `Adapter ${n} scale`);
  li.querySelector(".remove-adapter").setAttribute("aria-label", `Remove adapter ${n}`);
  li.querySelector(".remove-adapter").addEventListener("click", () => { li.remove(); $("add-adapter").disabled = false; updateCode(); });
  for (const input of li.querySelectorAll("input")) input.addEventListener("input", updateCode);
  list.append(li);
  $("add-adapter").disabled = list.children.length >= 4;
  updateCode();
}

function fillLoraModels() {
  const list = $("lora-models");
  list.replaceChildren();
  for (const m of state.models.filter((x) => x.kind === "lora")) list.append(new Option(m.name || m.hf_model_id, m.id));
}

function chosenModels() {
  const models = [$("model").value];
  if ($("compare").checked) {
    for (const s of document.querySelectorAll(".compare-model")) if (s.value) models.push(s.value);
  }
  return [...new Set(models.filter(Boolean))];
}

async function submit(event) {
  event.preventDefault();
  $("form-error").textContent = "";
  if (!key()) { keyMessage("Enter your API key first.", true); return; }
  if (state.mode !== "upscale" && !$("prompt").value.trim()) {
    $("form-error").textContent = "Write a prompt first."; return;
  }
  const models = chosenModels();
  if ($("compare").checked && models.length < 2) {
    $("form-error").textContent = "Compare needs two to four different models."; return;
  }
  if (models.length > 1 && $("seed").value === "") $("seed").value = randomSeed(); // one seed for all
  let edit = null;
  if (state.mode !== "generate") {
    if (!state.image) { $("form-error").textContent = `Choose an image to ${state.mode}.`; return; }
    edit = { image: state.image.dataUrl };
    if (state.mode === "edit" && state.maskDirty) edit.mask_image = maskDataUrl();
  }
  const results = $("results");
  results.replaceChildren();
  await Promise.all(models.map((model) => runTask(model, { ...requestBody(model), ...(edit || {}) }, results)));
  loadHistory();
}

async function runTask(model, body, container) {
  const card = document.createElement("article");
  card.className = "run";
  card.innerHTML = `<h3></h3><p class="status" role="status">Submitting…</p>
    <progress max="1" value="0" aria-label="Progress of ${model}"></progress><div class="images"></div>`;
  card.querySelector("h3").textContent = model;
  container.append(card);
  const endpoint = MODES[state.mode].route;
  try {
    const created = await api(endpoint, { method: "POST", body: JSON.stringify(body) });
    setStatus(card, `Queued (position ${created.queue_position ?? 0})`);
    const view = await follow(created.task_id, card);
    showTask(view, card);
  } catch (e) {
    setStatus(card, e.message, true);
  }
}

function setStatus(card, text, bad = false) {
  const status = card.querySelector(".status");
  status.textContent = text;
  status.classList.toggle("error", bad);
}

// the task's events stream (fetch, so the key goes in a header); polling if it fails
async function follow(taskId, card) {
  try {
    const done = await stream(taskId, (name, data) => onEvent(name, data, card));
    if (done) return done;
  } catch (e) { /* fall back to polling */ }
  for (;;) {
    const view = await api(`v1/tasks/${taskId}?wait=10`);
    onEvent("status", view, card);
    if (view.progress) onEvent("progress", view.progress, card);
    if (["completed", "failed", "canceled", "aborted"].includes(view.status)) return view;
  }
}

async function stream(taskId, onEvent) {
  const r = await fetch(`${API}v1/tasks/${taskId}/events`, { headers: { Authorization: `Bearer ${key()}` } });
  if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return null;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      const parsed = JSON.parse(data);
      onEvent(name, parsed);
      if (name === "done") return parsed;
    }
  }
}

function onEvent(name, data, card) {
  const bar = card.querySelector("progress");
  if (name === "status") {
    const text = { queued: `Queued (position ${data.queue_position ?? 0})`, in_progress: "Running…" }[data.status];
    if (text) setStatus(card, text);
  } else if (name === "progress") {
    bar.max = data.total_steps; bar.value = data.step;
    setStatus(card, `Step ${data.step} of ${data.total_steps}`);
  }
}

function showTask(view, card) {
  const bar = card.querySelector("progress");
  const images = card.querySelector(".images");
  images.replaceChildren();
  if (view.status !== "completed") {
    bar.hidden = true;
    setStatus(card, view.error ? `${view.status}: ${view.error.message}` : view.status, view.status !== "canceled");
    return;
  }
  bar.max = 1; bar.value = 1;
  const r = view.result;
  const seconds = ((r.usage.runtime_ms || 0) / 1000).toFixed(2);
  setStatus(card, `Done in ${seconds} s`);
  for (const item of r.data) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = item.url || `data:${item.content_type};base64,${item.b64_json}`;
    img.alt = `${view.model}, seed ${item.seed}`;
    const caption = document.createElement("figcaption");
    const cost = r.usage.cost / Math.max(1, r.data.length);
    caption.append(`seed ${item.seed} · ${r.width}×${r.height} · ${seconds} s · ${cost.toFixed(4)} ${r.usage.currency} `);
    const link = document.createElement("a");
    link.href = img.src; link.download = `${view.id}-${item.seed}`; link.textContent = "Download";
    const reuse = document.createElement("button");
    reuse.type = "button"; reuse.textContent = "Use this seed";
    reuse.addEventListener("click", () => { $("seed").value = item.seed; updateCode(); });
    caption.append(link, reuse);
    figure.append(img, caption);
    images.append(figure);
  }
}

// ------------------------------------------------------------------ edit: image and mask

const mask = document.createElement("canvas"); // white: repaint; black: keep (image size)

function loadImage(file) {
  if (!file || !file.type.startsWith("image/")) { $("form-error").textContent = "That is not an image."; return; }
  const reader = new FileReader();
  reader.onload = () => {
    const img = new Image();
    img.onload = () => {
      state.image = { dataUrl: reader.result, img };
      mask.width = img.naturalWidth; mask.height = img.naturalHeight;
      clearMask();
    };
    img.src = reader.result;
  };
  reader.readAsDataURL(file);
}

function clearMask() {
  const ctx = mask.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, mask.width, mask.height);
  state.maskDirty = false;
  drawCanvas();
}

function drawCanvas() {
  const canvas = $("mask-canvas");
  if (!state.image) return;
  const { img } = state.image;
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  // the mask as a translucent red overlay where it is white
  const overlay = document.createElement("canvas");
  overlay.width = mask.width; overlay.height = mask.height;
  const o = overlay.getContext("2d");
  o.drawImage(mask, 0, 0);
  const pixels = o.getImageData(0, 0, overlay.width, overlay.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const on = pixels.data[i] > 127;
    pixels.data[i] = 230; pixels.data[i + 1] = 40; pixels.data[i + 2] = 40;
    pixels.data[i + 3] = on ? 140 : 0;
  }
  o.putImageData(pixels, 0, 0);
  ctx.drawImage(overlay, 0, 0);
}

function paint(event) {
  if (!state.image || !(event.buttons & 1)) return;
  const canvas = $("mask-canvas");
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (mask.width / box.width);
  const y = (event.clientY - box.top) * (mask.height / box.height);
  const radius = Number($("brush-size").value) * (mask.width / box.width) / 2;
  const ctx = mask.getContext("2d");
  const eraser = document.querySelector("input[name=tool]:checked").value === "eraser";
  ctx.fillStyle = eraser ? "#000" : "#fff";
  ctx.beginPath(); ctx.arc(x, y, radius, 0, 2 * Math.PI); ctx.fill();
  state.maskDirty = true;
  drawCanvas();
}

function maskDataUrl() { return mask.toDataURL("image/png"); }

// ------------------------------------------------------------------ history

async function loadHistory() {
  if (!key()) return;
  try {
    const list = await api("v1/tasks?limit=20");
    const ol = $("history");
    ol.replaceChildren();
    for (const task of list.data) {
      const li = document.createElement("li");
      const item = document.createElement("button");
      item.type = "button"; item.className = "item";
      const what = task.request.prompt || (task.request.task === "upscale" ? `upscale ×${task.request.scale}` : "");
      item.textContent = `${what.slice(0, 40)} — ${task.status}`;
      item.addEventListener("click", () => restore(task));
      li.append(item);
      if (["queued", "in_progress"].includes(task.status)) {
        const cancel = document.createElement("button");
        cancel.type = "button"; cancel.textContent = "Cancel";
        cancel.setAttribute("aria-label", `Cancel ${task.id}`);
        cancel.addEventListener("click", async () => {
          try { await api(`v1/tasks/${task.id}/cancel`, { method: "POST" }); } catch (e) { $("form-error").textContent = e.message; }
          loadHistory();
        });
        li.append(cancel);
      }
      ol.append(li);
    }
  } catch (e) { $("form-error").textContent = e.message; }
}

async function restore(task) {
  const view = await api(`v1/tasks/${task.id}`);
  const r = view.request;
  setMode(r.task === "upscale" ? "upscale" : r.task === "text-to-image" || !r.task ? "generate" : "edit");
  if ([...$("model").options].some((o) => o.value === view.model)) { $("model").value = view.model; applyModel(); }
  $("prompt").value = r.prompt || "";
  $("negative").value = r.negative_prompt || "";
  const size = `${r.width}x${r.height}`;
  if ([...$("size").options].some((o) => o.value === size)) { $("size").value = size; $("custom-size").hidden = true; }
  else { $("size").value = "custom"; $("custom-size").hidden = false; $("width").value = r.width; $("height").value = r.height; }
  $("steps").value = r.num_inference_steps;
  if (r.guidance_scale !== null && r.guidance_scale !== undefined) $("guidance").value = r.guidance_scale;
  $("seed").value = (r.seeds || [])[0] ?? "";
  $("count").value = r.n || 1;
  $("adapters").replaceChildren();
  for (const a of r.loras || []) if (a.path !== view.model) addAdapter(a.path, a.scale);
  $("format").value = r.output_format || "png";
  const results = $("results");
  results.replaceChildren();
  const card = document.createElement("article");
  card.className = "run";
  card.innerHTML = `<h3></h3><p class="status" role="status"></p><progress max="1" value="0"></progress><div class="images"></div>`;
  card.querySelector("h3").textContent = view.model;
  results.append(card);
  showTask(view, card);
  updateCode();
}

// ------------------------------------------------------------------ code view

function updateCode() {
  if ($("code-panel").hidden) return;
  const model = $("model").value || "tessera/tiny-flux";
  const body = requestBody(model);
  const edit = state.mode === "edit";
  if (state.mode !== "generate") body.image = "data:image/png;base64,<your image>";
  if (edit && state.maskDirty) body.mask_image = "data:image/png;base64,<your mask>";
  const endpoint = `${API}${MODES[state.mode].route}`;
  const json = JSON.stringify(body, null, 2);
  const py = JSON.stringify(body, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
  const extra = {};
  for (const k of ["negative_prompt", "seed", "num_inference_steps", "guidance_scale", "strength", "loras"]) if (k in body) extra[k] = body[k];
  const code = {
    curl: `curl -s ${endpoint} \\\n  -H "Authorization: Bearer $TESSERA_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -H "Prefer: wait" \\\n  -d '${json.replace(/'/g, "'\\''")}'`,
    python: `import os\nimport httpx\n\nr = httpx.post(\n    "${endpoint}",\n    headers={"Authorization": f"Bearer {os.environ['TESSERA_API_KEY']}", "Prefer": "wait"},\n    json=${py.replace(/\n/g, "\n    ")},\n    timeout=300,\n)\ntask = r.json()\nprint(task["result"]["data"][0]["url"])`,
    openai: state.mode === "upscale"
      ? "# The OpenAI SDK has no upscale call: use curl or Python (httpx)."
      : edit
      ? `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${API}openai/v1", api_key=os.environ["TESSERA_API_KEY"])\nresult = client.images.edit(\n    model=${JSON.stringify(model)},\n    image=open("image.png", "rb"),${state.maskDirty ? '\n    mask=open("mask.png", "rb"),' : ""}\n    prompt=${JSON.stringify(body.prompt)},\n    n=${body.n},\n    extra_body=${JSON.stringify(extra)},\n)\nprint(result.data[0].url)`
      : `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${API}openai/v1", api_key=os.environ["TESSERA_API_KEY"])\nresult = client.images.generate(\n    model=${JSON.stringify(model)},\n    prompt=${JSON.stringify(body.prompt)},\n    size=${JSON.stringify(body.size)},\n    n=${body.n},\n    extra_body=${JSON.stringify(extra)},\n)\nprint(result.data[0].url)`,
  };
  $("code").textContent = code[state.lang];
}

// ------------------------------------------------------------------ wiring

function randomSeed() { return Math.floor(Math.random() * 2 ** 32); }

function setMode(mode) {
  state.mode = mode;
  for (const name of Object.keys(MODES)) $(`tab-${name}`).setAttribute("aria-selected", String(mode === name));
  $("edit-panel").hidden = mode === "generate";
  // the image is an upscale's input too; the mask and strength are an edit's alone
  for (const el of [document.querySelector(".mask-tools"), $("strength-row")]) el.hidden = mode !== "edit";
  $("generate").textContent = mode === "upscale" ? "Upscale" : "Generate";
  fillModelSelects();
}

function init() {
  $("api-key").value = key();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("tessera-key", $("api-key").value.trim());
    loadModels(); loadHistory();
  });
  $("request-form").addEventListener("submit", submit);
  $("model").addEventListener("change", applyModel);
  $("size").addEventListener("change", () => { $("custom-size").hidden = $("size").value !== "custom"; updateCode(); });
  $("dice").addEventListener("click", () => { $("seed").value = randomSeed(); updateCode(); });
  $("add-adapter").addEventListener("click", () => addAdapter());
  $("compare").addEventListener("change", () => { $("compare-models").hidden = !$("compare").checked; });
  $("tab-generate").addEventListener("click", () => setMode("generate"));
  $("tab-edit").addEventListener("click", () => setMode("edit"));
  $("tab-upscale").addEventListener("click", () => setMode("upscale"));
  $("image-file").addEventListener("change", (e) => loadImage(e.target.files[0]));
  const drop = $("drop-zone");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); loadImage(e.dataTransfer.files[0]); });
  const canvas = $("mask-canvas");
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); paint(e); });
  canvas.addEventListener("pointermove", paint);
  $("clear-mask").addEventListener("click", clearMask);
  $("view-code").addEventListener("click", () => {
    const panel = $("code-panel");
    panel.hidden = !panel.hidden;
    $("view-code").setAttribute("aria-expanded", String(!panel.hidden));
    updateCode();
  });
  for (const tab of document.querySelectorAll("#code-panel [role=tab]")) {
    tab.addEventListener("click", () => {
      state.lang = tab.dataset.lang;
      for (const t of document.querySelectorAll("#code-panel [role=tab]")) t.setAttribute("aria-selected", String(t === tab));
      updateCode();
    });
  }
  $("copy-code").addEventListener("click", () => navigator.clipboard?.writeText($("code").textContent));
  $("request-form").addEventListener("input", updateCode);
  $("refresh-history").addEventListener("click", loadHistory);
  loadModels();
  loadHistory();
}

init();
