// The drawing pad both draw-a-digit pages share (the served one and the exported one): strokes
// drawn with pointer events (mouse, pen and touch alike, one pointer at a time) onto a canvas whose
// opaque pixels are the ink.

export const PAD_SIZE = 280;     // drawing canvas resolution (CSS scales it to the screen)
export const STROKE_WIDTH = 18;  // about MNIST's stroke-to-digit ratio for a digit drawn large

// Make `pad` drawable; `onInk` runs after every change of the ink. Returns the 2-D context.
export function drawingPad(pad, onInk) {
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = STROKE_WIDTH;
  ctx.strokeStyle = ctx.fillStyle = "#111";
  let activePointer = null;  // a second finger does not draw
  let last = null;

  function toCanvas(event) {
    const box = pad.getBoundingClientRect();
    return { x: (event.clientX - box.left) * (PAD_SIZE / box.width),
             y: (event.clientY - box.top) * (PAD_SIZE / box.height) };
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || activePointer !== null) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    activePointer = event.pointerId;
    last = toCanvas(event);
    ctx.beginPath();
    ctx.arc(last.x, last.y, STROKE_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
    onInk();
  });

  pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    event.preventDefault();
    // Coalesced events keep fast strokes smooth where the browser batches pointer moves.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    for (const e of events.length ? events : [event]) {
      last = toCanvas(e);
      ctx.lineTo(last.x, last.y);
    }
    ctx.stroke();
    onInk();
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    if (pad.hasPointerCapture(event.pointerId)) pad.releasePointerCapture(event.pointerId);
    onInk();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);  // capture can end without pointerup
  return ctx;
}
