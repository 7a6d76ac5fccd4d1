// Benchmark page: the charts are static SVG; this only sorts the metric table.
"use strict";
(function () {
  const table = document.getElementById("metrics");
  if (!table) return;
  let column = -1, ascending = true;
  table.querySelectorAll("th[data-sort]").forEach((header) => {
    header.addEventListener("click", () => {
      const index = Number(header.dataset.sort);
      ascending = index === column ? !ascending : true;
      column = index;
      const body = table.tBodies[0];
      const key = (row) => {
        const cell = row.cells[index];
        return index === 0 ? cell.textContent : Number(cell.dataset.value || NaN);
      };
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = key(a), y = key(b);
        const order = typeof x === "string" ? x.localeCompare(y) : (x - y || 0);
        return ascending ? order : -order;
      });
      body.append(...rows);
    });
  });
  document.body.dataset.ready = "true";
}());
