// The page of `formers serve`: asks /health what the model does, sends the typed text to the
// model's task (/translate, /generate, /classify or /fill; generation is streamed, the text grows
// as the tokens come), shows the answer, then asks /attention for every layer's and head's
// weights and draws them with attention.js's viewer.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // per task: the placeholder, the options (name, default, step) and how to call and show it
  const TASKS = {
    translate: {
      placeholder: "a sentence to translate",
      options: [["beam", 4, 1], ["lenpen", 0.6, 0.1]],
      request: (text, o) => ["translate", { text: text, beam: o.beam, lenpen: o.lenpen }],
      show: (a) => a.translations[0].text,
      attention: (text, a) => a.translations[0].text.trim()
        ? { text: text, tgt: a.translations[0].text } : { text: text },
    },
    generate: {
      placeholder: "a prompt to continue",
      options: [["max_new_tokens", 40, 1], ["temperature", 0.8, 0.1], ["seed", 0, 1]],
      request: (text, o) => ["generate", { prompt: text, max_new_tokens: o.max_new_tokens,
        temperature: o.temperature, seed: o.seed, stream: true }],
      show: (a) => a.text,
      attention: (text, a) => ({ text: a.text }),
    },
    classify: {
      placeholder: "a text to classify",
      options: [],
      request: (text) => ["classify", { text: text }],
      show: (a) => {
        const p = a.predictions[0];
        return "label " + p.label + " (probabilities " +
          p.probabilities.map((x) => x.toFixed(3)).join(", ") + ")";
      },
      attention: (text) => ({ text: text }),
    },
    fill: {
      placeholder: "a text with [MASK] in it",
      options: [],
      request: (text) => ["fill", { text: text, top_k: 5 }],
      show: (a) => a.fills[0].text + "\n" + a.fills[0].masks.map((m, i) => "[MASK] " + (i + 1) +
        ": " + m.map((c) => c.token + " " + c.probability.toFixed(3)).join(", ")).join("\n"),
      attention: (text) => ({ text: text }),
    },
    embed: {
      placeholder: "a sentence to embed",
      options: [],
      request: (text) => ["embed", { text: text }],
      show: (a) => {
        const v = a.embeddings[0];
        return v.length + "-dimensional embedding (L2-normalized): [" +
          v.slice(0, 8).map((x) => x.toFixed(4)).join(", ") + ", ...]";
      },
      attention: (text) => ({ text: text }),
    },
  };

  // the server's API key (formers serve --api-key), asked once and kept for this tab
  let apiKey = sessionStorage.getItem("formers-api-key") || "";

  // the response to a GET (no body) or a JSON POST; a refusal throws with the server's detail
  async function send(path, body, asked) {
    const headers = { "Content-Type": "application/json" };
    if (apiKey) headers.Authorization = "Bearer " + apiKey;
    const response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && !asked) {  // ask for the key, then try once more
      apiKey = window.prompt("This server needs its API key:") || "";
      sessionStorage.setItem("formers-api-key", apiKey);
      if (apiKey) return send(path, body, true);
    }
    if (!response.ok) {
      const answer = await response.json();
      throw new Error(response.status + ": " + (answer.detail || response.statusText));
    }
    return response;
  }

  async function call(path, body) {
    return (await send(path, body)).json();
  }

  // a streamed answer (server-sent events): show the text as it grows; return the last event
  async function stream(response, shown) {
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "", last = null;
    $("output").hidden = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const messages = buffer.split("\n\n");
      buffer = messages.pop();
      for (const message of messages) {
        const event = JSON.parse(message.replace(/^data: /, ""));
        if (event.token !== undefined) {
          shown += event.token;
          $("output").textContent = shown;
        }
        if (event.done) last = event;
      }
    }
    if (!last) throw new Error("the stream ended early");
    return last;
  }

  async function callTask(path, body) {
    if (!body.stream) return call(path, body);
    return stream(await send(path, body), body.prompt);
  }

  function fail(error) {
    $("error").textContent = String(error.message || error);
    $("error").hidden = false;
  }

  function optionValues(task) {
    const values = {};
    for (const [name] of task.options) values[name] = Number($("option-" + name).value);
    return values;
  }

  async function start() {
    const health = await call("health");
    const task = TASKS[health.task];
    $("model").textContent = health.family + " model, " + health.parameters.toLocaleString() +
      " parameters (" + health.checkpoint + "): POST /" + health.task + ", at most " +
      health.limits.max_chars + " characters and " + health.limits.max_tokens + " tokens";
    $("input").placeholder = task.placeholder;
    $("input").maxLength = health.limits.max_chars;
    const defaults = health.defaults || {};  // /translate: the checkpoint recipe's [decode]
    for (const [name, value, step] of task.options) {
      const label = document.createElement("label");
      label.textContent = name + " ";
      const input = document.createElement("input");
      const initial = name in defaults ? defaults[name] : value;
      Object.assign(input, { type: "number", id: "option-" + name, value: initial, step: step });
      label.appendChild(input);
      $("options").appendChild(label);
    }
    $("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      $("error").hidden = true;
      $("run").disabled = true;
      $("busy").textContent = "running...";
      try {
        const text = $("input").value;
        const [path, body] = task.request(text, optionValues(task));
        const answer = await callTask(path, body);
        $("output").textContent = task.show(answer);
        $("output").hidden = false;
        const record = await call("attention", task.attention(text, answer));
        $("attention").hidden = false;
        window.formersAttention.mount(record);
      } catch (error) {
        fail(error);
      } finally {
        $("run").disabled = false;
        $("busy").textContent = "";
      }
    });
    document.body.dataset.ready = health.task;
  }

  start().catch(fail);
})();
