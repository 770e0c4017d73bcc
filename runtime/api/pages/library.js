// The library page: pick a library, search it by text, by an image file or by a result ("more like
// this"), filter on metadata, page through it; or see the duplicates it holds, in groups, and delete
// the ones the API suggests dropping. Plain DOM, no build step; every value from the API is shown as
// text (textContent), never as HTML.
"use strict";

const config = window.LIBRARY_PAGE;
const $ = (id) => document.getElementById(id);
let nextToken = null;
let groupsToken = null;

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
  showGrid(true);
  $("results").replaceChildren(...items.map(card));
}

function showGrid(grid) {
  $("results").hidden = !grid;
  $("groups").hidden = grid;
  if (grid) $("more-groups").hidden = true;
  else $("next").hidden = true;
}

function textDiv(className, text, tag = "div") {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

function imageCard(item) {
  const element = document.createElement("div");
  element.className = "card";
  element.dataset.id = item.id;
  element.append(thumbnail(item), textDiv("id", item.id));
  if (item.score !== undefined) element.append(textDiv("score", `score ${item.score.toFixed(4)}`));
  if (item.width) element.append(textDiv("size", `${item.width} x ${item.height}`));
  element.append(textDiv("meta", JSON.stringify(item.metadata || {}, null, 1)));
  return element;
}

function card(item) {
  const element = imageCard(item);
  element.title = "More like this";
  element.addEventListener("click", () => run(() => search({ id: item.id }, `like ${item.id}`)));
  return element;
}

function duplicatesPath(token) {
  const threshold = $("threshold").value.trim();
  return `/libraries/${library()}/duplicates?limit=${Number($("top-k").value) || 12}` +
    (threshold ? `&threshold=${encodeURIComponent(threshold)}` : "") +
    (token ? `&next_token=${encodeURIComponent(token)}` : "");
}

async function duplicates(token = null) {
  show("Looking for duplicates...");
  const page = await api("GET", duplicatesPath(token));
  showGrid(false);
  const shown = page.groups.map(group);
  if (token) $("groups").append(...shown);
  else $("groups").replaceChildren(...shown);
  groupsToken = page.next_token;
  $("more-groups").hidden = !groupsToken;
  const total = $("groups").children.length;
  show(total ? `${total} duplicate groups in ${page.scanned} images` : `No duplicates in ${page.scanned} images`);
}

function group(found) {
  const element = document.createElement("section");
  element.className = "group";
  element.dataset.tier = found.tier;
  const title = document.createElement("h2");
  title.append(textDiv("tier", found.tier, "span"), ` keep ${found.keeper.id}, ${found.others.length} to drop`);
  const keeper = imageCard(found.keeper);
  keeper.classList.add("keeper");
  keeper.prepend(textDiv("role", "keeper (suggested)"));
  const row = document.createElement("div");
  row.className = "grid";
  row.append(keeper, ...found.others.map(other));
  element.append(title, row);
  return element;
}

function other(item) {
  const element = imageCard(item);
  element.classList.add("other");
  element.prepend(textDiv("role", "duplicate"));
  const button = document.createElement("button");
  button.type = "button";
  button.className = "delete";
  button.textContent = "Delete";
  button.addEventListener("click", () => run(() => deleteImage(item.id)));
  element.append(button);
  return element;
}

async function deleteImage(id) {
  if (!window.confirm(`Delete ${id} from ${$("library").value}? This cannot be undone.`)) return;
  await api("DELETE", `/libraries/${library()}/images/${encodeURIComponent(id)}`);
  const option = $("library").selectedOptions[0];
  if (option) option.dataset.count = Math.max(0, Number(option.dataset.count) - 1);
  await duplicates();
  show(`Deleted ${id}. ${$("status").textContent}`);
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
  $("duplicates").addEventListener("click", () => run(() => duplicates()));
  $("more-groups").addEventListener("click", () => run(() => duplicates(groupsToken)));
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
