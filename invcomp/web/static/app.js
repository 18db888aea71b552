// invcomp web pages: everything they do goes through the JSON API (/docs), with the page's CSRF token.
// Text from the server is set with textContent, never as HTML.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function api(method, url, body) {
  const opts = {method, headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"}, credentials: "same-origin"};
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const resp = await fetch(url, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) throw new Error((data && data.detail) || `HTTP ${resp.status}`);
  return data;
}

function showError(msg) {
  const el = document.getElementById("error");
  el.textContent = msg;
  el.hidden = !msg;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const fmt = (v, d) => (v === null || v === undefined) ? "n/a" : (typeof v === "number" ? v.toFixed(d) : String(v));

// Live progress of jobs: server-sent events, with polling when the stream cannot be opened.
function watch(ids, onJob, onEnd) {
  if (!ids.length) return;
  let ended = false;
  const finish = () => { if (!ended) { ended = true; if (onEnd) onEnd(); } };
  const poll = async () => {
    const left = new Set(ids);
    while (left.size) {
      for (const id of [...left]) {
        try {
          const job = await api("GET", `/api/jobs/${id}`);
          onJob(job);
          if (["done", "failed", "cancelled"].includes(job.status)) left.delete(id);
        } catch (e) { left.delete(id); }
      }
      await new Promise(r => setTimeout(r, 1000));
    }
    finish();
  };
  if (!window.EventSource) { poll(); return; }
  const es = new EventSource(`/api/events?ids=${ids.join(",")}`);
  let got = false;
  es.addEventListener("job", ev => { got = true; onJob(JSON.parse(ev.data)); });
  es.addEventListener("end", () => { es.close(); finish(); });
  es.onerror = () => { es.close(); if (!ended) { if (got) poll(); else poll(); } };
}

// A table row per job, updated from its events.
function jobRow(tbody, job, label) {
  const status = el("td", {class: `status ${job.status}`, text: job.status});
  const bar = el("progress", {max: "1", value: String(job.progress)});
  const a = el("td", {class: "a"}), b = el("td", {class: "b"});
  const link = el("a", {href: job.links.page, text: "result"});
  const cancel = el("button", {type: "button", class: "cancel", text: "Cancel"});
  cancel.addEventListener("click", async () => {
    try { onUpdate(await api("POST", `/api/jobs/${job.id}/cancel`)); } catch (e) { showError(e.message); }
  });
  const tr = el("tr", {"data-job": job.id}, el("td", {class: "name", text: label || job.name}), status,
                el("td", {}, bar), a, b, el("td", {}, link, " ", cancel));
  tbody.append(tr);
  function onUpdate(j) {
    status.textContent = j.status;
    status.className = `status ${j.status}`;
    bar.value = j.progress;
    const over = ["done", "failed", "cancelled"].includes(j.status);
    cancel.hidden = over;
    if (j.status === "done" && j.result) {
      if (j.kind === "decode") {
        a.textContent = `${j.result.width}×${j.result.height}`;
        b.replaceChildren(el("a", {href: `${j.links.png}?download=1`, download: ""},
                             el("img", {src: j.links.png, class: "thumb", alt: j.name})));
      } else {
        a.textContent = `${j.result.bytes} B`;
        b.textContent = fmt(j.result.ssim, 4);
      }
    } else if (j.error) {
      a.replaceChildren(el("span", {class: "error", text: j.error}));
    }
  }
  onUpdate(job);
  return onUpdate;
}

// A drop zone with a file input inside: the files chosen either way.
function dropZone(onFiles) {
  const drop = document.getElementById("drop"), input = document.getElementById("files");
  const list = document.getElementById("chosen");
  let files = [];
  const set = fs => {
    files = [...fs];
    list.replaceChildren(...files.map(f => el("li", {text: `${f.name} (${f.size.toLocaleString()} bytes)`})));
    if (onFiles) onFiles(files);
  };
  input.addEventListener("change", () => set(input.files));
  ["dragenter", "dragover"].forEach(t => drop.addEventListener(t, e => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach(t => drop.addEventListener(t, e => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", e => set(e.dataTransfer.files));
  return () => files;
}

function submitJobs(formId, url, addFields) {
  const chosen = dropZone();
  const table = document.getElementById("jobs"), tbody = table.querySelector("tbody");
  document.getElementById(formId).addEventListener("submit", async ev => {
    ev.preventDefault();
    showError("");
    const files = chosen();
    if (!files.length) { showError("choose or drop at least one file"); return; }
    const fd = new FormData();
    files.forEach(f => fd.append("files", f, f.name));
    addFields(fd);
    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      const res = await api("POST", url, fd);
      table.hidden = false;
      const updates = {};
      res.jobs.forEach(j => { updates[j.id] = jobRow(tbody, j); });
      watch(res.jobs.map(j => j.id), j => updates[j.id] && updates[j.id](j));
    } catch (e) { showError(e.message); } finally { button.disabled = false; }
  });
}

function compressPage() {
  submitJobs("encode-form", "/api/jobs", fd => {
    const fit = document.getElementById("fit").value;
    for (const name of ["mode", "model", "fit", "iters", "faces", "background"]) {
      const v = document.getElementById(name).value.trim();
      if (!v || (["faces", "background"].includes(name) && ["crop", "squash"].includes(fit))) continue;
      if ((name === "faces" && v === "largest") || (name === "background" && v === "none")) continue;  // the defaults
      fd.append(name, v);
    }
    const kind = document.getElementById("rate-kind").value, value = document.getElementById("rate-value").value.trim();
    if (kind && value) fd.append(kind, value);
  });
}

function decompressPage() { submitJobs("decode-form", "/api/decode", () => {}); }

function comparePage() {
  document.getElementById("compare-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    showError("");
    const fd = new FormData();
    for (const name of ["original", "reconstruction", "bitstream"]) {
      const f = document.getElementById(name).files[0];
      if (f) fd.append(name, f, f.name);
    }
    try {
      const res = await api("POST", "/api/compare", fd);
      window.location.href = res.jobs[0].links.page;
    } catch (e) { showError(e.message); }
  });
}

function viewer() {
  const zoom = document.getElementById("zoom");
  if (!zoom) return;
  const imgs = [...document.querySelectorAll("img.zoomable")];
  const apply = () => {
    for (const img of imgs) {
      if (zoom.value === "fit") { img.style.width = "100%"; continue; }
      const w = (img.naturalWidth || 0) * Number(zoom.value);
      if (w) img.style.width = `${w}px`;
    }
  };
  imgs.forEach(img => img.addEventListener("load", apply));
  zoom.addEventListener("change", apply);
  apply();
  const view = document.getElementById("view");
  view.addEventListener("change", () => {
    document.getElementById("side").hidden = view.value !== "side";
    document.getElementById("slider-view").hidden = view.value !== "slider";
  });
  const slider = document.getElementById("slider"), over = document.getElementById("slider-left");
  const clip = () => { over.style.clipPath = `inset(0 ${100 - Number(slider.value)}% 0 0)`; };
  slider.addEventListener("input", clip);
  clip();
  const panes = [...document.querySelectorAll("#side .pane")];  // the two panes scroll together
  panes.forEach(p => p.addEventListener("scroll", () => panes.forEach(q => {
    if (q !== p) { q.scrollLeft = p.scrollLeft; q.scrollTop = p.scrollTop; }
  })));
}

function jobPage() {
  const status = document.getElementById("job-status"), id = status.dataset.job;
  if (status.dataset.finished === "no") {
    const bar = document.getElementById("progress"), text = document.getElementById("progress-text");
    watch([id], j => {
      bar.value = j.progress;
      text.textContent = `${Math.round(j.progress * 100)}%`;
      status.textContent = j.status;
    }, () => window.location.reload());
    document.getElementById("cancel").addEventListener("click", async () => {
      try { await api("POST", `/api/jobs/${id}/cancel`); } catch (e) { showError(e.message); }
    });
  }
  viewer();
  const table = document.getElementById("children");
  document.querySelectorAll("button.rates").forEach(b => b.addEventListener("click", async () => {
    showError("");
    const values = b.dataset.values.split(",").map(Number);
    try {
      const res = await api("POST", `/api/jobs/${id}/rates`, {[b.dataset.key]: values});
      table.hidden = false;
      const updates = {};
      res.jobs.forEach(j => { updates[j.id] = jobRow(table.querySelector("tbody"), j, j.name.split(" @ ").pop()); });
      watch(res.jobs.map(j => j.id), j => updates[j.id] && updates[j.id](j));
    } catch (e) { showError(e.message); }
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const run = {compress: compressPage, decompress: decompressPage, compare: comparePage, job: jobPage}[page];
  if (run) run();
});
