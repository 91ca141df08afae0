// digitnet draw-a-digit page: draw on a canvas, send the ink to POST /api/predict while drawing,
// show the predicted digit, the ten probabilities and the 28x28 image the network saw.
// Plain browser JavaScript (ES modules), no build step and no libraries, so the page works offline.
import { PAD_SIZE, drawingPad } from "./pad.js";

(() => {
  const SEND_SIZE = 56;          // the ink array sent to the server: 280 / 5, box-averaged
  const FACTOR = PAD_SIZE / SEND_SIZE;
  const THROTTLE_MS = 100;       // at most ~10 requests a second while drawing, one at a time

  const pad = document.getElementById("pad");
  const seen = document.getElementById("seen");
  const seenCtx = seen.getContext("2d");
  const result = document.getElementById("result");
  const digitEl = document.getElementById("digit");
  const quickEl = document.getElementById("quick");
  const announce = document.getElementById("announce");
  const bars = document.getElementById("bars");
  const fileInput = document.getElementById("file");
  const modelEl = document.getElementById("model");

  // -- the probability bars (built once) ------------------------------------------------------
  const barFills = [];
  const barValues = [];
  const barItems = [];
  function buildBars(labels) {
    bars.replaceChildren();
    barFills.length = barValues.length = barItems.length = 0;
    for (const label of labels) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "bar-label";
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "bar-track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = "–";
      item.append(name, track, value);
      bars.append(item);
      barItems.push(item);
      barFills.push(fill);
      barValues.push(value);
    }
  }
  buildBars("0123456789".split(""));

  // -- drawing (pad.js, shared with the exported page) ---------------------------------------
  const ctx = drawingPad(pad, () => requestPrediction());

  // -- the canvas as an ink array -------------------------------------------------------------
  // The strokes are the only opaque pixels, so alpha is the ink. Box-average 5x5 blocks into a
  // 56x56 array: small to send, and the server does the MNIST cropping, scaling and centring.
  function canvasInk() {
    const alpha = ctx.getImageData(0, 0, PAD_SIZE, PAD_SIZE).data;
    const rows = [];
    let peak = 0;
    for (let r = 0; r < SEND_SIZE; r++) {
      const row = new Array(SEND_SIZE);
      for (let c = 0; c < SEND_SIZE; c++) {
        let sum = 0;
        for (let y = r * FACTOR; y < (r + 1) * FACTOR; y++) {
          let i = (y * PAD_SIZE + c * FACTOR) * 4 + 3;
          for (let x = 0; x < FACTOR; x++, i += 4) sum += alpha[i];
        }
        const value = Math.round((sum / (FACTOR * FACTOR * 255)) * 100) / 100;
        row[c] = value;
        if (value > peak) peak = value;
      }
      rows.push(row);
    }
    return peak > 0 ? rows : null;
  }

  // -- talking to the server, throttled -------------------------------------------------------
  let inFlight = false;   // one request at a time: later strokes wait for the answer
  let pending = false;    // the drawing changed since the last request was sent
  let timer = null;
  let lastSent = -Infinity;
  let generation = 0;     // bumped by Clear and Upload: answers for older drawings are dropped

  function setBusy(busy) { result.dataset.state = busy ? "busy" : "idle"; }

  function requestPrediction() {
    pending = true;
    setBusy(true);
    if (inFlight || timer !== null) return;
    const wait = Math.max(0, lastSent + THROTTLE_MS - performance.now());
    timer = setTimeout(() => { timer = null; sendDrawing(); }, wait);
  }

  async function sendDrawing() {
    if (!pending || inFlight) return;
    pending = false;
    const pixels = canvasInk();
    if (pixels === null) { resetResult("Draw a digit to see what the network reads."); setBusy(false); return; }
    await send(() => fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pixels }),
    }));
  }

  async function send(makeRequest, source) {
    const mine = generation;
    inFlight = true;
    lastSent = performance.now();
    try {
      const response = await makeRequest();
      const body = await response.json().catch(() => ({}));
      if (mine !== generation) return;
      if (response.ok) showPrediction(body, source);
      else showError(body.detail || `The server answered ${response.status}.`);
    } catch (error) {
      if (mine === generation) showError("Cannot reach the digitnet server; is `digitnet serve` still running?");
    } finally {
      inFlight = false;
      if (pending) requestPrediction();
      else if (timer === null) setBusy(false);
    }
  }

  // -- showing the answer ---------------------------------------------------------------------
  function showPrediction(prediction, source) {
    const p = prediction.probabilities;
    const best = prediction.digit;
    digitEl.textContent = quickEl.textContent = prediction.label;
    digitEl.classList.remove("error");
    const from = source ? ` in ${source}` : "";
    announce.textContent = `The network reads a ${prediction.label}${from}, ${(p[best] * 100).toFixed(1)}% sure.`;
    p.forEach((probability, i) => {
      barFills[i].style.width = `${(probability * 100).toFixed(1)}%`;
      barValues[i].textContent = `${(probability * 100).toFixed(1)}%`;
      barItems[i].classList.toggle("best", i === best);
    });
    drawSeen(prediction.input);
  }

  function drawSeen(input) {
    // MNIST style: white ink on black, one canvas pixel per network input (CSS enlarges it).
    const image = seenCtx.createImageData(28, 28);
    for (let r = 0; r < 28; r++) {
      for (let c = 0; c < 28; c++) {
        const v = Math.round(input[r][c] * 255);
        const i = (r * 28 + c) * 4;
        image.data[i] = image.data[i + 1] = image.data[i + 2] = v;
        image.data[i + 3] = 255;
      }
    }
    seenCtx.putImageData(image, 0, 0);
  }

  function resetResult(message) {
    digitEl.textContent = quickEl.textContent = "?";
    digitEl.classList.remove("error");
    announce.textContent = message;
    barFills.forEach((fill) => { fill.style.width = "0"; });
    barValues.forEach((value) => { value.textContent = "–"; });
    barItems.forEach((item) => item.classList.remove("best"));
    seenCtx.fillStyle = "#000";
    seenCtx.fillRect(0, 0, 28, 28);
  }

  function showError(message) {
    digitEl.textContent = quickEl.textContent = "!";
    digitEl.classList.add("error");
    announce.textContent = message;
  }

  // -- buttons --------------------------------------------------------------------------------
  function clearPad() {
    generation++;
    pending = false;
    if (timer !== null) { clearTimeout(timer); timer = null; }
    ctx.clearRect(0, 0, PAD_SIZE, PAD_SIZE);
    if (!inFlight) setBusy(false);
  }

  document.getElementById("clear").addEventListener("click", () => {
    clearPad();
    resetResult("Cleared. Draw a digit to see what the network reads.");
  });

  document.getElementById("upload").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    if (!file) return;
    clearPad();
    resetResult(`Reading ${file.name}…`);
    setBusy(true);
    const form = new FormData();
    form.append("image", file);
    fileInput.value = "";   // choosing the same file again fires "change" again
    await send(() => fetch("/api/predict", { method: "POST", body: form }), file.name);
  });

  // -- the model, described in the footer -----------------------------------------------------
  fetch("/api/model")
    .then((response) => response.json())
    .then((info) => {
      if (Array.isArray(info.class_names) && info.class_names.length !== barItems.length) buildBars(info.class_names);
      const accuracy = typeof info.test_accuracy === "number"
        ? `, ${(info.test_accuracy * 100).toFixed(1)}% test accuracy` : "";
      const dataset = info.dataset ? ` trained on ${info.dataset}` : "";
      modelEl.textContent = `Model ${info.architecture} (${info.parameters.toLocaleString("en")} parameters)` +
        `${dataset}${accuracy}. digitnet ${info.version}.`;
    })
    .catch(() => { modelEl.textContent = "Cannot reach the digitnet server."; });

  resetResult(announce.textContent);
})();
