// The drawing page: a canvas and a file input that send an image to POST /read and show what
// the model reads. One mark shows the digit, the confidence, all ten probabilities and the 28x28
// image the model received, or says that it does not look like a digit; several marks show the
// number read, with a box and a reading over each one.
// Plain script, no dependencies: the page must work offline and under a strict CSP
// (no inline scripts or style attributes; CSSOM changes such as el.style.width are allowed).
(() => {
  'use strict';

  const READ_URL = '/read?include_input=true';
  // Brush width as a fraction of the pad's height: 20 px on a 280 px high pad, close to the
  // stroke width of MNIST digits once the service scales a digit of the pad's height to 20x20.
  const BRUSH = 20 / 280;
  // The drawing is sent at this height, whatever the screen's pixel density; the width follows
  // the pad's shape. The model sees each digit at 20x20: benchmarks/page_size.py measures the
  // accuracy against the height sent (docs/benchmarks.md), and a device-pixel canvas would cost
  // the service several times the pixels on a phone for no gain.
  const SEND_HEIGHT = 140;
  const INK = '#000000';
  const PAPER = '#ffffff';

  const pad = document.getElementById('pad');
  const ctx = pad.getContext('2d');
  const clearButton = document.getElementById('clear');
  const fileInput = document.getElementById('file');
  const dropzone = document.getElementById('dropzone');
  const card = document.getElementById('result-card');
  const statusLine = document.getElementById('status');
  const errorBox = document.getElementById('error');
  const result = document.getElementById('result');
  const reading = document.getElementById('reading');
  const textOut = document.getElementById('text');
  const marksList = document.getElementById('marks');
  const verdict = document.getElementById('verdict');
  const single = document.getElementById('single');
  const notDigit = document.getElementById('not-digit');
  const guessOut = document.getElementById('guess');
  const padBoxes = document.getElementById('pad-boxes');
  const uploadBoxes = document.getElementById('upload-boxes');
  const digitOut = document.getElementById('digit');
  const confidenceOut = document.getElementById('confidence');
  const seen = document.getElementById('seen');
  const seenCtx = seen.getContext('2d');
  const uploadFigure = document.getElementById('upload-figure');
  const uploadPreview = document.getElementById('upload-preview');
  const uploadName = document.getElementById('upload-name');
  const barsList = document.getElementById('bars');
  const meta = document.getElementById('meta');

  const IDLE_STATUS = statusLine.textContent;

  // ---- Drawing --------------------------------------------------------------------------
  // Strokes are kept in canvas-independent units (0..1) so the drawing survives a resize of
  // the canvas backing store (rotation, zoom, a change of devicePixelRatio).
  const strokes = [];
  let current = null;
  let activePointer = null;

  function setBrush(context, height) {
    context.lineWidth = BRUSH * height;
    context.lineCap = 'round';
    context.lineJoin = 'round';
    context.strokeStyle = INK;
    context.fillStyle = INK;
  }

  // Paper and every stroke, on the pad or on the smaller canvas that is sent.
  function paint(context, width, height) {
    context.fillStyle = PAPER;
    context.fillRect(0, 0, width, height);
    setBrush(context, height);
    for (const stroke of strokes) {
      context.beginPath();
      if (stroke.length === 1) {
        context.arc(stroke[0][0] * width, stroke[0][1] * height, context.lineWidth / 2, 0, Math.PI * 2);
        context.fill();
        continue;
      }
      context.moveTo(stroke[0][0] * width, stroke[0][1] * height);
      for (const p of stroke.slice(1)) context.lineTo(p[0] * width, p[1] * height);
      context.stroke();
    }
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p[0] * pad.width, p[1] * pad.height, ctx.lineWidth / 2, 0, Math.PI * 2);
    ctx.fill();
  }

  function segment(a, b) {
    ctx.beginPath();
    ctx.moveTo(a[0] * pad.width, a[1] * pad.height);
    ctx.lineTo(b[0] * pad.width, b[1] * pad.height);
    ctx.stroke();
  }

  function redraw() {
    paint(ctx, pad.width, pad.height);
  }

  function fitBackingStore() {
    const rect = pad.getBoundingClientRect();
    if (rect.width <= 0 || rect.height <= 0) return;
    // Match device pixels so strokes stay sharp on high-density screens.
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(rect.width * ratio);
    const height = Math.round(rect.height * ratio);
    if (pad.width !== width || pad.height !== height) {
      pad.width = width;
      pad.height = height;
    }
    redraw();
  }

  function pointFrom(event) {
    const rect = pad.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
  }

  pad.addEventListener('pointerdown', (event) => {
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    if (activePointer !== null) return; // a second finger does not start another stroke
    pad.setPointerCapture(event.pointerId);
    activePointer = event.pointerId;
    current = [pointFrom(event)];
    strokes.push(current);
    clearBoxes(); // the boxes belong to the previous answer
    dot(current[0]);
  });

  pad.addEventListener('pointermove', (event) => {
    if (event.pointerId !== activePointer) return;
    event.preventDefault();
    // Coalesced events keep fast strokes smooth: the browser may batch several moves per frame.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) {
      const p = pointFrom(e);
      segment(current[current.length - 1], p);
      current.push(p);
    }
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    current = null;
    // Busy at once, not when the PNG is ready: a newer stroke always supersedes an older answer.
    card.dataset.state = 'busy';
    predictDrawing();
  }
  pad.addEventListener('pointerup', endStroke);
  pad.addEventListener('pointercancel', endStroke);
  pad.addEventListener('lostpointercapture', endStroke);

  pad.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' || event.key === 'Delete' || event.key === 'Backspace') {
      event.preventDefault();
      clearAll();
    }
  });

  clearButton.addEventListener('click', clearAll);

  function clearAll() {
    strokes.length = 0;
    current = null;
    activePointer = null;
    cancelRequest();
    redraw();
    resetResult();
    statusLine.textContent = 'Cleared. ' + IDLE_STATUS;
  }

  function predictDrawing() {
    if (strokes.length === 0) return;
    const rect = pad.getBoundingClientRect();
    const sent = document.createElement('canvas');
    sent.height = SEND_HEIGHT;
    sent.width = Math.max(1, Math.round((SEND_HEIGHT * rect.width) / Math.max(1, rect.height)));
    paint(sent.getContext('2d'), sent.width, sent.height);
    // toDataURL, not toBlob: Chromium runs toBlob as an idle task, which can wait up to a
    // second on a busy or headless page. Encoding a canvas this size takes milliseconds.
    const base64 = sent.toDataURL('image/png').split(',')[1];
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const source = { kind: 'drawing', width: sent.width, height: sent.height };
    predict(new Blob([bytes], { type: 'image/png' }), { 'Content-Type': 'image/png' }, source);
  }

  // ---- Upload: file input, drag and drop, paste -------------------------------------------
  function predictFile(file) {
    if (!file) return;
    showUploadPreview(file);
    // Raw bodies need an image Content-Type; anything else (an empty or unknown type) goes as
    // multipart so the service can sniff the bytes and explain what it cannot read.
    if (file.type && file.type.startsWith('image/')) {
      predict(file, { 'Content-Type': file.type }, { kind: 'upload', name: file.name });
    } else {
      const form = new FormData();
      form.append('file', file, file.name || 'image');
      predict(form, {}, { kind: 'upload', name: file.name });
    }
  }

  fileInput.addEventListener('change', () => {
    predictFile(fileInput.files[0]);
    fileInput.value = ''; // choosing the same file again still fires "change"
  });

  // The whole page accepts a drop, so a near miss does not make the browser open the file.
  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes('Files');
  document.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    dropzone.classList.add('dragging');
  });
  document.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropzone.classList.remove('dragging');
  });
  document.addEventListener('drop', (event) => {
    dragDepth = 0;
    dropzone.classList.remove('dragging');
    if (!hasFiles(event)) return;
    event.preventDefault();
    const files = event.dataTransfer.files;
    if (files && files.length) predictFile(files[0]);
  });
  document.addEventListener('paste', (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith('image/'));
    if (file) predictFile(file);
  });

  let previewUrl = null;
  function showUploadPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    uploadPreview.src = previewUrl;
    uploadName.textContent = file.name ? 'Your image: ' + file.name : 'Your image';
  }

  // ---- Talking to the service --------------------------------------------------------------
  let requestId = 0;
  let controller = null;

  function cancelRequest() {
    requestId += 1;
    if (controller) controller.abort();
    controller = null;
    card.removeAttribute('aria-busy');
  }

  async function predict(body, headers, source) {
    cancelRequest();
    const id = requestId;
    controller = new AbortController();
    card.dataset.state = 'busy';
    card.setAttribute('aria-busy', 'true');
    const started = performance.now();
    let response;
    let payload = null;
    try {
      response = await fetch(READ_URL, {
        method: 'POST', body, signal: controller.signal, cache: 'no-store',
        headers: Object.assign({ Accept: 'application/json' }, headers),
      });
      payload = await response.json().catch(() => null);
    } catch (err) {
      if (id !== requestId) return; // superseded by a newer stroke or upload
      showError('Could not reach the service', 'Check that the service is running and try again.', source);
      return;
    }
    if (id !== requestId) return;
    controller = null;
    card.removeAttribute('aria-busy');
    if (!response.ok) {
      const { title, text } = describeError(response.status, payload, source);
      showError(title, text, source);
      return;
    }
    if (!isReading(payload)) {
      showError('Unexpected answer', 'The service answered with something that is not a reading.', source);
      return;
    }
    showReading(payload, source, performance.now() - started);
  }

  function isMark(p) {
    return p && Number.isInteger(p.digit) && Array.isArray(p.probabilities) && p.probabilities.length === 10 &&
      typeof p.is_digit === 'boolean' && p.box && Number.isFinite(p.box.width);
  }

  function isReading(p) {
    return p && typeof p.text === 'string' && Array.isArray(p.digits) && p.digits.length > 0 && p.digits.every(isMark);
  }

  const TITLES = {
    400: 'The request was not accepted',
    401: 'This service needs an API key',
    403: 'This service needs an API key',
    413: 'That image is too large',
    415: 'That file type is not supported',
    422: 'That image could not be read',
    429: 'Too many requests at once',
    503: 'The service is not ready',
    504: 'The service took too long',
  };
  const FALLBACKS = {
    401: 'The page cannot send one. Use the API with your key, or run the service without DIGITS_API_KEYS.',
    413: 'Scale it down: a digit needs no more than a few hundred pixels a side.',
    415: 'Choose a PNG, JPEG, WebP, BMP, GIF or TIFF image.',
    429: 'Wait a moment and try again.',
    503: 'Wait a few seconds and try again.',
  };

  function sentence(text) {
    const t = text.trim();
    if (!t) return t;
    return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
  }

  function describeError(status, payload, source) {
    const detail = payload && typeof payload.detail === 'string' ? payload.detail : '';
    if (status === 422 && /^no digit found/i.test(detail)) {
      return {
        title: 'No digit found',
        text: source.kind === 'drawing'
          ? 'Draw a digit or a number, large and dark enough to fill most of the pad\'s height.'
          : sentence(detail.replace(/^no digit found:?\s*/i, '')) || 'The image looks blank.',
      };
    }
    const title = TITLES[status] || (status >= 500 ? 'The service had a problem' : 'Something went wrong');
    const text = detail ? sentence(detail) : FALLBACKS[status] || `The service answered with status ${status}. Try again.`;
    return { title, text };
  }

  // ---- Showing results ---------------------------------------------------------------------
  const bars = [];
  for (let d = 0; d < 10; d += 1) {
    const li = document.createElement('li');
    li.className = 'bar';
    const label = document.createElement('span');
    label.className = 'bar-label';
    label.textContent = String(d);
    const track = document.createElement('span');
    track.className = 'bar-track';
    const fill = document.createElement('span');
    fill.className = 'bar-fill';
    track.appendChild(fill);
    const value = document.createElement('span');
    value.className = 'bar-value';
    li.append(label, track, value);
    barsList.appendChild(li);
    bars.push({ li, fill, value });
  }

  function percent(p) {
    // The service rounds probabilities, so 1 and 0 appear; a softmax is never quite either.
    if (p >= 0.999) return '>99.9%';
    if (p < 0.001) return '<0.1%';
    return (Math.floor(p * 1000) / 10).toFixed(1) + '%'; // round down: 99.96% is not 100.0%
  }

  const spoken = (p) => percent(p).replace('>', 'over ').replace('<', 'under ');

  function showReading(r, source, elapsedMs) {
    errorBox.textContent = '';
    card.dataset.state = 'done';
    result.hidden = false;
    uploadFigure.hidden = source.kind !== 'upload';
    const what = source.kind === 'upload' ? 'the image' : 'your drawing';
    const one = r.digits.length === 1;
    reading.hidden = one;
    verdict.hidden = !one;
    single.hidden = !one;
    seen.parentElement.hidden = !one;
    statusLine.textContent = one ? showMark(r.digits[0], what) : showNumber(r, what);
    showBoxes(r.digits, source);
    const parts = [];
    if (r.model_version) parts.push('Model version ' + r.model_version);
    parts.push(Math.round(elapsedMs) + ' ms');
    meta.textContent = parts.join(' · ');
    revealResult(source);
  }

  // One mark: the digit, its confidence and the ten probabilities, or "not a digit" with the
  // best guess beside it, smaller.
  function showMark(p, what) {
    digitOut.textContent = String(p.digit);
    confidenceOut.textContent = percent(p.confidence);
    verdict.classList.toggle('rejected', !p.is_digit);
    notDigit.hidden = p.is_digit;
    guessOut.textContent = `${p.digit} (${percent(p.confidence)})`;
    p.probabilities.forEach((prob, d) => {
      const bar = bars[d];
      // CSSOM property writes are allowed by the CSP; style="" attributes are not.
      bar.fill.style.width = (Math.max(0, Math.min(1, prob)) * 100).toFixed(2) + '%';
      bar.value.textContent = percent(prob);
      bar.li.classList.toggle('top', d === p.digit);
    });
    drawSeen(p.input);
    if (!p.is_digit) return `That doesn't look like a digit. The best guess for ${what} is ${p.digit}.`;
    return `The model reads ${what} as ${p.digit}, with ${spoken(p.confidence)} confidence.`;
  }

  // Several marks: the number (one line per row) and each mark's reading, left to right.
  function showNumber(r, what) {
    textOut.textContent = r.text || '–';
    marksList.textContent = '';
    for (const p of r.digits) {
      const li = document.createElement('li');
      li.className = p.is_digit ? 'mark' : 'mark rejected';
      const d = document.createElement('span');
      d.className = 'mark-digit';
      d.textContent = p.is_digit ? String(p.digit) : '?';
      const c = document.createElement('span');
      c.className = 'mark-confidence';
      c.textContent = p.is_digit ? percent(p.confidence) : 'not a digit';
      li.append(d, c);
      marksList.appendChild(li);
    }
    const refused = r.digits.filter((p) => !p.is_digit).length;
    const marks = refused === 1 ? '1 mark does not look like a digit' : `${refused} marks do not look like digits`;
    if (!r.text) return `That doesn't look like a number: ${marks}.`;
    const spokenText = r.text.split('\n').join(', then ');
    return `The model reads ${what} as ${spokenText}.` + (refused ? ` ${sentence(marks)}` : '');
  }

  function clearBoxes() {
    padBoxes.textContent = '';
    uploadBoxes.textContent = '';
  }

  // A box over each mark, placed in percent of the image sent, so it follows any resize.
  async function showBoxes(marks, source) {
    clearBoxes();
    let layer = padBoxes;
    let width = source.width;
    let height = source.height;
    if (source.kind === 'upload') {
      layer = uploadBoxes;
      try {
        await uploadPreview.decode();
      } catch (err) {
        return; // a format the browser cannot show: the reading is still in the result card
      }
      width = uploadPreview.naturalWidth;
      height = uploadPreview.naturalHeight;
    }
    if (!width || !height) return;
    for (const p of marks) {
      const box = document.createElement('div');
      box.className = p.is_digit ? 'box' : 'box rejected';
      box.style.left = ((100 * p.box.x) / width).toFixed(3) + '%';
      box.style.top = ((100 * p.box.y) / height).toFixed(3) + '%';
      box.style.width = ((100 * p.box.width) / width).toFixed(3) + '%';
      box.style.height = ((100 * p.box.height) / height).toFixed(3) + '%';
      const label = document.createElement('span');
      label.className = 'box-label';
      label.textContent = p.is_digit ? `${p.digit} · ${percent(p.confidence)}` : '?';
      box.appendChild(label);
      layer.appendChild(box);
    }
  }

  function drawSeen(input) {
    seenCtx.clearRect(0, 0, seen.width, seen.height);
    if (!Array.isArray(input) || input.length !== 28) {
      seen.dataset.drawn = 'false';
      return;
    }
    const image = seenCtx.createImageData(28, 28);
    for (let r = 0; r < 28; r += 1) {
      for (let c = 0; c < 28; c += 1) {
        // The model's input is white ink on black, from 0 to 1.
        const v = Math.round(Math.max(0, Math.min(1, Number(input[r][c]) || 0)) * 255);
        const i = (r * 28 + c) * 4;
        image.data[i] = v;
        image.data[i + 1] = v;
        image.data[i + 2] = v;
        image.data[i + 3] = 255;
      }
    }
    seenCtx.putImageData(image, 0, 0);
    seen.dataset.drawn = 'true';
  }

  // On a phone the upload section sits below the result: bring the answer into view. A drawing
  // never scrolls the page, since the answer sits right under the canvas.
  function revealResult(source) {
    if (source.kind !== 'upload') return;
    const top = card.getBoundingClientRect().top;
    if (top >= 0 && top < window.innerHeight * 0.5) return;
    const still = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    card.scrollIntoView({ block: 'start', behavior: still ? 'auto' : 'smooth' });
  }

  function showError(title, text, source) {
    card.dataset.state = 'error';
    card.removeAttribute('aria-busy');
    result.hidden = true;
    clearBoxes();
    errorBox.textContent = '';
    const strong = document.createElement('strong');
    strong.textContent = title;
    const p = document.createElement('span');
    p.textContent = ' ' + text;
    errorBox.append(strong, p);
    statusLine.textContent = '';
    if (source) revealResult(source);
  }

  function resetResult() {
    card.dataset.state = 'idle';
    result.hidden = true;
    errorBox.textContent = '';
    uploadFigure.hidden = true;
    clearBoxes();
  }

  // ---- Start -------------------------------------------------------------------------------
  if ('ResizeObserver' in window) {
    new ResizeObserver(fitBackingStore).observe(pad);
  } else {
    window.addEventListener('resize', fitBackingStore);
  }
  fitBackingStore();
})();
