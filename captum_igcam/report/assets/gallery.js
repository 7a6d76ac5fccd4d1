// Gallery of an explain-dataset output: paged, sortable and filterable.
"use strict";
(function () {
  const data = window.IGCAM_REPORT;
  const col = {};
  data.columns.forEach((name, i) => { col[name] = i; });
  const PAGE = 48;
  const main = document.getElementById("report");
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const label = (index) => data.classes[String(index)];
  // A classifier's row has the predicted class; a segmentation or detection
  // row only the class explained (and no probability).
  const shownClass = (r) => (r[col.predicted] === null ? r[col.target] : r[col.predicted]);
  const chance = (r) => (r[col.probability] === null ? 0 : r[col.probability]);
  const several = data.methods.length > 1;
  let page = 0;

  const controls = el("div", { class: "controls" });
  const sort = el("select", { id: "sort" });
  [["key", "image name"], ["confidence-asc", "confidence, lowest first"],
   ["confidence-desc", "confidence, highest first"],
   ...(several ? [["disagreement-desc", "disagreement, highest first"]] : [])]
    .forEach(([value, text]) => sort.append(el("option", { value }, text)));
  const cls = el("select", { id: "class" });
  cls.append(el("option", { value: "" }, "all classes"));
  Object.keys(data.classes).sort((a, b) => label(a).localeCompare(label(b)))
    .forEach((index) => cls.append(el("option", { value: index }, label(index))));
  const minConf = el("input", { id: "min-confidence", type: "number", min: "0", max: "1", step: "0.05", value: "0" });
  const maxConf = el("input", { id: "max-confidence", type: "number", min: "0", max: "1", step: "0.05", value: "1" });
  const minDis = el("input", { id: "min-disagreement", type: "number", min: "0", max: "2", step: "0.05", value: "0" });
  const wrong = el("input", { id: "wrong", type: "checkbox" });
  const search = el("input", { id: "search", type: "search", placeholder: "image name contains" });
  const wrap = (text, input) => { const l = el("label", {}, text + " "); l.append(input); return l; };
  controls.append(wrap("sort by", sort), wrap("predicted class", cls),
    wrap("confidence from", minConf), wrap("to", maxConf));
  if (several) controls.append(wrap("disagreement at least", minDis));
  if (data.truth) controls.append(wrap("misclassified only", wrong));
  controls.append(search);
  const count = el("span", { id: "count" });
  controls.append(count);
  const grid = el("div", { class: "grid", id: "gallery" });
  const pager = el("div", { class: "pager" });
  const prev = el("button", { id: "prev" }, "previous");
  const next = el("button", { id: "next" }, "next");
  const where = el("span", { id: "page" });
  pager.append(prev, " ", where, " ", next);
  const methods = el("p", { class: "note" },
    "Methods (one explain-dataset folder each): " + data.methods.join("; ") +
    (several ? ". Disagreement: 1 - correlation of the maps, mean over method pairs." : "."));
  main.append(methods, controls, grid, pager);

  function selected() {
    const lo = Number(minConf.value), hi = Number(maxConf.value), dis = Number(minDis.value);
    const text = search.value.toLowerCase();
    const rows = data.rows.filter((r) =>
      (cls.value === "" || String(shownClass(r)) === cls.value) &&
      (r[col.probability] === null || (r[col.probability] >= lo && r[col.probability] <= hi)) &&
      (!several || dis === 0 || (r[col.disagreement] !== null && r[col.disagreement] >= dis)) &&
      (!wrong.checked || (r[col.truth] !== null && r[col.truth] !== r[col.predicted])) &&
      (text === "" || r[col.key].toLowerCase().includes(text)));
    const by = {
      "key": (a, b) => a[col.key].localeCompare(b[col.key]),
      "confidence-asc": (a, b) => chance(a) - chance(b),
      "confidence-desc": (a, b) => chance(b) - chance(a),
      "disagreement-desc": (a, b) => (b[col.disagreement] || 0) - (a[col.disagreement] || 0),
    }[sort.value];
    return rows.sort(by);
  }

  function picture(src, caption) {
    const figure = el("figure");
    if (src) figure.append(el("img", { src, loading: "lazy", alt: caption }));
    else figure.append(el("div", { class: "note" }, "(not available)"));
    figure.append(el("figcaption", {}, caption));
    return figure;
  }

  function card(r) {
    const box = el("div", { class: "card" });
    const truth = r[col.truth];
    if (truth !== null && r[col.predicted] !== null && truth !== r[col.predicted]) box.classList.add("wrong");
    if (r[col.source] !== "same") box.classList.add("changed");
    const pictures = el("div", { class: "pictures" });
    pictures.append(picture(r[col.photo], "photo"));
    r[col.overlays].forEach((src, i) => pictures.append(picture(src, data.methods[i])));
    const facts = el("div", { class: "facts" });
    facts.append(el("div", { class: "key" }, r[col.key]));
    if (r[col.source] === "changed") {
      facts.append(el("div", { class: "warning" }, "this image file changed since its maps were computed (other bytes): neither it nor the maps are shown; explain it again"));
    } else if (r[col.source] === "missing") {
      facts.append(el("div", { class: "warning" }, "this image file cannot be read any more: its maps are not shown"));
    }
    if (r[col.predicted] !== null) {
      facts.append(el("div", {}, `predicted: ${label(r[col.predicted])} (${r[col.probability].toFixed(3)})`));
    }
    if (r[col.target] !== r[col.predicted]) {
      const p = r[col.target_probability];
      facts.append(el("div", {}, `explained: ${label(r[col.target])}` + (p === null ? "" : ` (${p.toFixed(3)})`)));
    }
    if (truth !== null) facts.append(el("div", {}, `ground truth: ${label(truth)}`));
    if (r[col.disagreement] !== null) facts.append(el("div", {}, `disagreement: ${r[col.disagreement].toFixed(3)}`));
    box.append(pictures, facts);
    return box;
  }

  function render() {
    const rows = selected();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(page, pages - 1);
    grid.replaceChildren(...rows.slice(page * PAGE, (page + 1) * PAGE).map(card));
    count.textContent = `${rows.length} of ${data.rows.length} images`;
    where.textContent = `page ${page + 1} of ${pages}`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  [sort, cls, minConf, maxConf, minDis, wrong, search].forEach((input) =>
    input.addEventListener("input", () => { page = 0; render(); }));
  prev.addEventListener("click", () => { page -= 1; render(); window.scrollTo(0, 0); });
  next.addEventListener("click", () => { page += 1; render(); window.scrollTo(0, 0); });
  render();
  document.body.dataset.ready = "true";
}());
