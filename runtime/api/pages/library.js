// The library page: pick a library, search it by text, by an image file or by a result ("more like
// this"), filter on metadata, page through it. Plain DOM, no build step; every value from the API is
// shown as text (textContent), never as HTML.
"use strict";

const config = window.LIBRARY_PAGE;
const $ = (id) => document.getElementById(id);
let nextToken = null;

async function api(method, path, body) {
  const headers = {};
  const key = $("api-key").value || sessionStorage.getItem("imsim-api-key");
  if (key) headers["x-api-key"] = key;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(config.base + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(answer.message || `HTTP ${response.status}`);
  return answer;
}

function library() { return encodeURIComponent($("library").value); }

function show(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

async function run(task) {
  try { await task(); } catch (error) { show(error.message, true); }
}

async function loadLibraries() {
  const { libraries } = await api("GET", "/libraries");
  const select = $("library");
  select.replaceChildren(...libraries.map((item) => {
    const option = document.createElement("option");
    option.value = item.name;
    option.textContent = item.name;
    option.dataset.count = item.image_count;
    option.dataset.thumbnails = item.thumbnails ? "yes" : "";
    return option;
  }));
  if (!libraries.length) show("No library yet: create one with POST /libraries (see the API Explorer).");
  else await browse();
}

function filterValue(text) {
  try { const value = JSON.parse(text); if (typeof value !== "object") return value; } catch (_) { /* a string */ }
  return text;
}

function currentFilter() {
  const pairs = {};
  for (const row of document.querySelectorAll(".pair")) {
    const [key, value] = row.querySelectorAll("input");
    if (key.value) pairs[key.value] = filterValue(value.value);
  }
  const written = $("filter-json").value.trim();
  const parts = [];
  if (Object.keys(pairs).length) parts.push(pairs);
  if (written) parts.push(JSON.parse(written));
  if (!parts.length) return undefined;
  return parts.length === 1 ? parts[0] : { $and: parts };
}

function searchBody(query) {
  const body = { ...query, top_k: Number($("top-k").value) || 12 };
  const filter = currentFilter();
  if (filter) body.filter = filter;
  return body;
}

async function search(query, what) {
  show(`Searching ${what}...`);
  const { matches } = await api("POST", `/libraries/${library()}/search`, searchBody(query));
  render(matches);
  $("next").hidden = true;
  show(`${matches.length} matches ${what}`);
}

async function browse(token = null) {
  const path = `/libraries/${library()}/images?limit=${Number($("top-k").value) || 12}` +
    (token ? `&next_token=${encodeURIComponent(token)}` : "");
  const page = await api("GET", path);
  render(page.images);
  nextToken = page.next_token;
  $("next").hidden = !nextToken;
  const count = $("library").selectedOptions[0]?.dataset.count;
  $("count").textContent = count === undefined ? "" : `${count} images`;
  show(`${page.images.length} images${token ? " (next page)" : ""}`);
}

function render(items) {
  $("results").replaceChildren(...items.map(card));
}

function card(item) {
  const element = document.createElement("div");
  element.className = "card";
  element.dataset.id = item.id;
  element.title = "More like this";
  element.append(thumbnail(item));
  const id = document.createElement("div");
  id.className = "id";
  id.textContent = item.id;
  element.append(id);
  if (item.score !== undefined) {
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = `score ${item.score.toFixed(4)}`;
    element.append(score);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = JSON.stringify(item.metadata || {}, null, 1);
  element.append(meta);
  element.addEventListener("click", () => run(() => search({ id: item.id }, `like ${item.id}`)));
  return element;
}

function thumbnail(item) {
  const placeholder = document.createElement("div");
  placeholder.className = "thumb";
  placeholder.textContent = "no picture kept";
  if (!$("library").selectedOptions[0]?.dataset.thumbnails) return placeholder;
  const picture = document.createElement("img");
  picture.className = "thumb";
  picture.alt = item.id;
  picture.loading = "lazy";
  picture.src = `${config.base}/libraries/${library()}/images/${encodeURIComponent(item.id)}/thumbnail`;
  picture.addEventListener("error", () => picture.replaceWith(placeholder));
  return picture;
}

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(new Error(`${file.name}: cannot be read`));
    reader.readAsDataURL(file);
  });
}

async function searchByFile(file) {
  if (file) await search({ img: await readAsBase64(file) }, `like ${file.name}`);
}

function addPair() {
  const row = document.createElement("div");
  row.className = "pair";
  for (const label of ["key", "value"]) {
    const input = document.createElement("input");
    input.placeholder = label;
    input.setAttribute("aria-label", `filter ${label}`);
    row.append(input);
  }
  $("pairs").append(row);
}

function wire() {
  if (config.asks_key) $("key-field").hidden = false;
  $("api-key").addEventListener("change", () => sessionStorage.setItem("imsim-api-key", $("api-key").value));
  $("library").addEventListener("change", () => run(() => browse()));
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    run(() => (text ? search({ text }, `for "${text}"`) : browse()));
  });
  $("browse").addEventListener("click", () => run(() => browse()));
  $("next").addEventListener("click", () => run(() => browse(nextToken)));
  $("file").addEventListener("change", () => run(() => searchByFile($("file").files[0])));
  $("add-pair").addEventListener("click", addPair);
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    run(() => searchByFile(event.dataTransfer.files[0]));
  });
  addPair();
  run(loadLibraries);
}

wire();
