// The interactive attention viewer: draws a record (AttentionRecord.to_dict) into <svg id="drawing">,
// driven by the #view, #layer, #head and #mode selectors. A saved page mounts the JSON in
// #attention-data on load; the server's page calls window.formersAttention.mount(record) for each
// answer. Views: "lines" (queries left, keys right, opacity = weight; hover a token to keep only
// its lines, as bertviz's head view) and "heatmap" (queries down, keys across).
(function () {
  "use strict";

  function mount(data) {
    const svg = document.getElementById("drawing");
    const NS = svg.namespaceURI;  // inline <svg> in HTML: the SVG namespace, no URL to write
    const $ = (id) => document.getElementById(id);
    const state = { view: Object.keys(data.views)[0], layer: 0, head: "all", mode: "lines", hover: null };

    function el(name, attrs, parent) {
      const node = document.createElementNS(NS, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      parent.appendChild(node);
      return node;
    }

    function option(select, value, label) {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = label;
      select.appendChild(o);
    }

    function tokens(axis) { return data[axis]; }

    // the (queries, keys) matrix of the current view, layer and head ("all": the heads' mean)
    function matrix() {
      const heads = data.views[state.view][state.layer];
      if (state.head !== "all") return heads[state.head];
      return heads[0].map((row, q) => row.map((_, k) =>
        heads.reduce((sum, h) => sum + h[q][k], 0) / heads.length));
    }

    function fillSelectors() {
      const views = $("view"), layers = $("layer"), heads = $("head");
      if (!views.options.length) for (const v of Object.keys(data.views)) option(views, v, v);
      views.value = state.view;
      const block = data.views[state.view];
      layers.innerHTML = "";
      block.forEach((_, i) => option(layers, i, "layer " + i));
      state.layer = Math.min(state.layer, block.length - 1);
      layers.value = state.layer;
      heads.innerHTML = "";
      option(heads, "all", "all heads (mean)");
      block[0].forEach((_, i) => option(heads, i, "head " + i));
      if (state.head !== "all" && state.head >= block[0].length) state.head = "all";
      heads.value = state.head;
    }

    // a token label; hovering it highlights its row (query) or column (key) without a redraw
    function label(x, y, text, anchor, side, index, width) {
      const g = el("g", { class: "token", "data-side": side, "data-index": index }, svg);
      el("rect", { class: "token-bg", x: anchor === "end" ? x - width : x, y: y - 13,
        width: width, height: 18 }, g);
      el("text", { x: x, y: y, "text-anchor": anchor }, g).textContent = text;
      g.addEventListener("mouseenter", () => { state.hover = { side, index }; highlight(); });
      g.addEventListener("mouseleave", () => { state.hover = null; highlight(); });
      return g;
    }

    // whether the line from query q to key k is shown under the current hover
    function shown(q, k) {
      if (!state.hover) return true;
      return state.hover.side === "query" ? state.hover.index === q : state.hover.index === k;
    }

    function drawLines(m, queries, keys) {
      const step = 22, width = 120, gap = 220, top = 20;
      const height = top + step * Math.max(queries.length, keys.length);
      svg.setAttribute("width", 2 * width + gap + 20);
      svg.setAttribute("height", height);
      const x0 = width, x1 = width + gap;
      m.forEach((row, q) => row.forEach((w, k) => {
        if (w < 0.005) return;
        el("line", { x1: x0 + 4, y1: top + q * step - 4, x2: x1 - 4, y2: top + k * step - 4,
          "stroke-opacity": w.toFixed(3), "data-q": q, "data-k": k }, svg);
      }));
      queries.forEach((t, q) => label(x0, top + q * step, t, "end", "query", q, width));
      keys.forEach((t, k) => label(x1, top + k * step, t, "start", "key", k, width));
    }

    function drawHeatmap(m, queries, keys) {
      const cell = 22, left = 120, top = 110;
      svg.setAttribute("width", left + cell * keys.length + 20);
      svg.setAttribute("height", top + cell * queries.length + 20);
      m.forEach((row, q) => row.forEach((w, k) => {
        el("rect", { class: "cell", x: left + k * cell, y: top + q * cell, width: cell - 1,
          height: cell - 1, "fill-opacity": w.toFixed(3), "data-w": w, "data-q": q, "data-k": k }, svg)
          .appendChild(document.createElementNS(NS, "title")).textContent =
            queries[q] + " \u2192 " + keys[k] + ": " + w.toFixed(3);
      }));
      el("rect", { class: "frame", x: left, y: top, width: cell * keys.length,
        height: cell * queries.length }, svg);
      queries.forEach((t, q) => label(left - 6, top + q * cell + 15, t, "end", "query", q, left - 6));
      keys.forEach((t, k) => {
        const g = label(0, 0, t, "start", "key", k, top - 10);
        g.setAttribute("transform", `translate(${left + k * cell + 15},${top - 6}) rotate(-90)`);
      });
    }

    function draw() {
      svg.innerHTML = "";
      const [qAxis, kAxis] = data.axes[state.view];
      const m = matrix();
      (state.mode === "lines" ? drawLines : drawHeatmap)(m, tokens(qAxis), tokens(kAxis));
      highlight();
    }

    // apply state.hover: lines of other tokens hidden, heatmap cells of other rows dimmed
    function highlight() {
      for (const g of svg.querySelectorAll("g.token")) {
        const on = state.hover !== null && state.hover.side === g.dataset.side &&
          state.hover.index === Number(g.dataset.index);
        for (const child of g.children) child.classList.toggle("active", on);
      }
      for (const line of svg.querySelectorAll("line")) {
        line.style.display = shown(Number(line.dataset.q), Number(line.dataset.k)) ? "" : "none";
      }
      for (const cell of svg.querySelectorAll("rect.cell")) {
        const dim = shown(Number(cell.dataset.q), Number(cell.dataset.k)) ? 1 : 0.25;
        cell.setAttribute("fill-opacity", (Number(cell.dataset.w) * dim).toFixed(3));
      }
      const hover = state.hover ? state.hover.side + state.hover.index : "-";
      svg.setAttribute("data-state", [state.view, state.layer, state.head, state.mode, hover].join(" "));
    }

    // on*= (not addEventListener): mounting a new record replaces the previous one's handlers
    $("view").onchange = (e) => { state.view = e.target.value; state.hover = null; fillSelectors(); draw(); };
    $("layer").onchange = (e) => { state.layer = Number(e.target.value); draw(); };
    $("head").onchange = (e) => {
      state.head = e.target.value === "all" ? "all" : Number(e.target.value); draw(); };
    $("mode").onchange = (e) => { state.mode = e.target.value; state.hover = null; draw(); };
    state.mode = $("mode").value;
    state.layer = data.views[state.view].length - 1;
    $("view").innerHTML = "";
    fillSelectors();
    draw();
  }

  window.formersAttention = { mount: mount };
  const embedded = document.getElementById("attention-data");
  if (embedded) mount(JSON.parse(embedded.textContent));
})();
