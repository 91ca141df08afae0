// digitnet's draw-a-digit page without a server: the drawing is prepared MNIST-style here and read
// by model.onnx with onnxruntime-web (its WebAssembly backend), all inside the browser.
// For tests and the curious, window.digitnet holds the last image the network saw and its answer.
import * as ort from "./ort.wasm.bundle.min.mjs";
import { PAD_SIZE, drawingPad } from "./pad.js";

const BOX = 20 / 28;         // MNIST: the ink fits a 20x20 box inside the 28x28 image
const NOISE_FLOOR = 0.1;     // ink fainter than this share of the strongest does not widen the crop

// Threads need cross-origin isolation headers, which a plain static file server does not send.
ort.env.wasm.numThreads = 1;

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const seen = $("seen");
const seenCtx = seen.getContext("2d");
const result = $("result");
const announce = $("announce");
const exposed = (window.digitnet = { ready: false, input: null, probabilities: null });

let info = null;             // model.json
let session = null;          // the onnxruntime-web session of model.onnx
let barItems = [];

// -- the probability bars -------------------------------------------------------------------
function buildBars(labels) {
  barItems = labels.map((label) => {
    const item = document.createElement("li");
    item.innerHTML = '<span class="bar-label"></span><span class="bar-track" aria-hidden="true">' +
      '<span class="bar-fill"></span></span><span class="bar-value">–</span>';
    item.querySelector(".bar-label").textContent = label;
    return item;
  });
  $("bars").replaceChildren(...barItems);
}

// -- drawing (pad.js, shared with the served page) ------------------------------------------
const ctx = drawingPad(pad, () => requestPrediction());

// -- MNIST-style preparation: crop to the ink, fit the 20x20 box, centre by mass ------------
// Output pixel i covers input pixels [i * f, (i + 1) * f) of the crop, f = length / size; each
// input pixel counts by the share of it inside (area averaging: antialiased, no ringing).
function areaWeights(start, length, size) {
  const f = length / size;
  return Array.from({ length: size }, (_, i) => {
    const a = i * f;
    const b = Math.min(length, (i + 1) * f);
    const weights = [];
    for (let j = Math.floor(a); j < b; j++) weights.push([start + j, (Math.min(b, j + 1) - Math.max(a, j)) / f]);
    return weights;
  });
}

function prepare(height, width) {
  const alpha = ctx.getImageData(0, 0, PAD_SIZE, PAD_SIZE).data;  // the strokes are the only opaque pixels
  const ink = new Float32Array(PAD_SIZE * PAD_SIZE);
  let peak = 0;
  for (let i = 0; i < ink.length; i++) peak = Math.max(peak, (ink[i] = alpha[4 * i + 3] / 255));
  if (peak === 0) return null;
  let top = PAD_SIZE, bottom = -1, left = PAD_SIZE, right = -1;
  for (let y = 0; y < PAD_SIZE; y++) {
    for (let x = 0; x < PAD_SIZE; x++) {
      if (ink[y * PAD_SIZE + x] < NOISE_FLOOR * peak) continue;
      top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
    }
  }
  const [inkH, inkW] = [bottom - top + 1, right - left + 1];
  const scale = Math.round(BOX * Math.min(height, width)) / Math.max(inkH, inkW);
  const [h, w] = [Math.max(1, Math.round(inkH * scale)), Math.max(1, Math.round(inkW * scale))];
  const rows = areaWeights(top, inkH, h);
  const cols = areaWeights(left, inkW, w);
  const small = new Float32Array(h * w);
  let mass = 0, rowMass = 0, colMass = 0;
  rows.forEach((row, r) => cols.forEach((col, c) => {
    let sum = 0;
    for (const [y, wy] of row) for (const [x, wx] of col) sum += wy * wx * ink[y * PAD_SIZE + x];
    small[r * w + c] = Math.min(1, sum);
    mass += small[r * w + c]; rowMass += r * small[r * w + c]; colMass += c * small[r * w + c];
  }));
  // Whole-pixel shift that puts the centre of mass on the centre pixel; never past an edge.
  const clamp = (value, high) => Math.min(Math.max(value, 0), high);
  const y0 = clamp(Math.round(Math.floor(height / 2) - rowMass / mass), height - h);
  const x0 = clamp(Math.round(Math.floor(width / 2) - colMass / mass), width - w);
  const input = new Float32Array(height * width);
  for (let r = 0; r < h; r++) input.set(small.subarray(r * w, (r + 1) * w), (y0 + r) * width + x0);
  return input;
}

// -- running the network, one drawing at a time ---------------------------------------------
let queued = false;          // the drawing changed since the network last read it
let running = false;
let generation = 0;          // bumped by Clear: answers for older drawings are dropped

function requestPrediction() {
  queued = true;
  if (session !== null && !running) predictLoop();
}

async function predictLoop() {
  running = true;
  result.dataset.state = "busy";
  try {
    while (queued) {
      queued = false;
      const mine = generation;
      const { name, height, width } = info.input;
      const input = prepare(height, width);
      if (input === null) continue;
      const output = await session.run({ [name]: new ort.Tensor("float32", input, [1, height, width]) });
      if (mine === generation) show(input, Array.from(output[info.output].data));
    }
  } catch (error) {
    showError(`The network could not read the drawing (${error.message}).`);
  } finally {
    running = false;
    result.dataset.state = "idle";
  }
}

// -- showing the answer ---------------------------------------------------------------------
function show(input, probabilities) {
  Object.assign(exposed, { input: Array.from(input), probabilities });
  const best = probabilities.indexOf(Math.max(...probabilities));
  const label = info.class_names[best];
  $("digit").textContent = $("quick").textContent = label;
  $("digit").classList.remove("error");
  announce.textContent = `The network reads a ${label}, ${(probabilities[best] * 100).toFixed(1)}% sure.`;
  probabilities.forEach((p, i) => {
    const percent = `${(p * 100).toFixed(1)}%`;
    barItems[i].querySelector(".bar-fill").style.width = percent;
    barItems[i].querySelector(".bar-value").textContent = percent;
    barItems[i].classList.toggle("best", i === best);
  });
  const image = seenCtx.createImageData(seen.width, seen.height);  // white ink on black, as MNIST
  input.forEach((v, i) => {
    image.data.fill(Math.round(v * 255), 4 * i, 4 * i + 3);
    image.data[4 * i + 3] = 255;
  });
  seenCtx.putImageData(image, 0, 0);
}

function resetResult(message) {
  Object.assign(exposed, { input: null, probabilities: null });
  $("digit").textContent = $("quick").textContent = "?";
  announce.textContent = message;
  for (const item of barItems) {
    item.querySelector(".bar-fill").style.width = "0";
    item.querySelector(".bar-value").textContent = "–";
    item.classList.remove("best");
  }
  seenCtx.fillStyle = "#000";
  seenCtx.fillRect(0, 0, seen.width, seen.height);
}

function showError(message) {
  $("digit").textContent = $("quick").textContent = "!";
  $("digit").classList.add("error");
  announce.textContent = message;
}

$("clear").addEventListener("click", () => {
  generation++;
  queued = false;
  ctx.clearRect(0, 0, PAD_SIZE, PAD_SIZE);
  resetResult("Cleared. Draw a digit to see what the network reads.");
});

// -- loading the model ----------------------------------------------------------------------
async function load() {
  try {
    info = await (await fetch("model.json")).json();
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  } catch (error) {
    showError(`The model did not load (${error.message}). Serve this folder with a web server ` +
      "(python -m http.server) and open it over http://, not as a file.");
    $("model").textContent = "No model.";
    return;
  }
  [seen.height, seen.width] = [info.input.height, info.input.width];
  buildBars(info.class_names);
  // A model trained on a folder of other classes: name them instead of "0 to 9".
  const classes = info.class_names.join(", ");
  if (classes !== "0, 1, 2, 3, 4, 5, 6, 7, 8, 9") {
    $("pad-help").textContent = `Draw one of ${classes} with a mouse, pen or finger: any size, anywhere in the square.`;
  }
  resetResult("Draw a digit to see what the network reads.");
  $("model").textContent = `Model ${info.model} (${info.architecture}, ${info.parameters.toLocaleString("en")} ` +
    `parameters), run by onnxruntime-web ${info.onnxruntime_web}. digitnet ${info.digitnet}.`;
  exposed.ready = true;
  document.body.dataset.model = "ready";
  if (queued) predictLoop();
}

load();
