/* labinterp teaching page: builds the form from GET /v1/analytes, sends POST /v1/interpret and draws the
   answer. Every verdict shown is the API's; the page only converts the API's canonical numbers back to the
   typed unit (value_in_typed_unit = canonical / basis.conversion.factor) to draw the bar. The page's whole
   state lives in the URL fragment (after #), which browsers never send to a server. */
"use strict";

(function () {
  const API = { analytes: "/v1/analytes", intervals: "/v1/reference-intervals", interpret: "/v1/interpret" };
  const CASES_URL = "/web/static/cases.json";
  const SVG_NS = "http://www.w3.org/2000/svg"; // an XML namespace name, never fetched
  const DEBOUNCE_MS = 350;
  const BAR_HEADROOM = 1.15; // the bar runs this much past the highest limit or value, to show the zone beyond
  const PATIENT_KEYS = ["age", "age_unit", "sex", "specimen", "hemolysis", "lab"];
  const ZONE_WEIGHT = { implausible: 1, critical: 1.4, abnormal: 1.6, normal: 2.4, unknown: 2.4 };
  const ZONE_WORDS = {
    implausible: "implausible (taken as an error)", critical: "critical", abnormal: "outside the interval",
    normal: "within the reference interval", unknown: "no reference interval",
  };
  const CLASSIFICATION_WORDS = {
    hypo: "below the reference interval", normal: "within the reference interval",
    hyper: "above the reference interval", indeterminate: "not classified",
  };
  const REASON_WORDS = {
    implausible: "the value lies beyond the implausible limits", no_interval: "no reference interval applies",
    off_scale: "off-scale result",
  };
  const ORIGIN_WORDS = {
    result: "sent with the result", laboratory: "the laboratory profile's own", default: "the service's default data",
  };
  const SYSTEM_TITLES = [["muscle", "Muscle"], ["nerve", "Nerve"], ["other", "Other"]];

  const model = {
    analytes: [], byId: {}, intervals: {}, cases: [], answer: null, request: null, seq: 0, controller: null,
    timer: null, how: new Set(),
  };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", value);
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
  }

  /** Numbers for display only (classification is done by the API on unrounded values). */
  function fmt(x) {
    if (x === null || x === undefined || !Number.isFinite(x)) return "none";
    return String(Number(x.toPrecision(4)));
  }

  function unitLabel(ucum) {
    // The most conventional spelling the API accepts for a UCUM code (meq/L is shown as mEq/L).
    for (const analyte of model.analytes) {
      for (const unit of analyte.accepted_units) {
        if (unit.ucum !== ucum) continue;
        const same = unit.spellings.filter((s) => s.toLowerCase() === ucum.toLowerCase());
        same.sort((a, b) => upper(b) - upper(a));
        return same[0] || ucum;
      }
    }
    return ucum;
  }

  function upper(text) {
    return (text.match(/[A-Z]/g) || []).length;
  }

  function displayName(analyteId) {
    const analyte = model.byId[analyteId];
    return analyte ? analyte.display : analyteId;
  }

  async function getJson(url, options) {
    const headers = Object.assign({ Accept: "application/json" }, (options && options.headers) || {});
    // A key is sent only when the service asked for one (401) and the user typed it; it never enters the URL.
    if (model.apiKey && url.startsWith("/v1/")) headers["X-API-Key"] = model.apiKey;
    const response = await fetch(url, Object.assign({}, options || {}, { headers }));
    if (response.status === 401 && url.startsWith("/v1/")) showKeyForm(Boolean(model.apiKey));
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    return { status: response.status, body };
  }

  // ------------------------------------------------------------------ state <-> URL fragment
  function readFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const state = {};
    for (const [key, value] of params) state[key] = value;
    return state;
  }

  // Typing replaces the current history entry; picking a case adds one, so Back returns to the previous case.
  function writeFragment(state, push) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value !== "" && value !== null && value !== undefined) params.set(key, value);
    }
    const text = params.toString();
    const url = location.pathname + location.search + (text ? "#" + text : "");
    if (url !== location.pathname + location.search + location.hash) {
      if (push) history.pushState(null, "", url);
      else history.replaceState(null, "", url);
    }
    model.shownHash = location.hash;
  }

  function collectState() {
    const state = {};
    for (const analyte of model.analytes) {
      const value = $("value-" + analyte.id).value.trim();
      if (value === "") continue;
      state[analyte.id] = value;
      state[analyte.id + "_unit"] = $("unit-" + analyte.id).value;
    }
    const age = $("age").value.trim();
    if (age !== "") {
      state.age = age;
      state.age_unit = $("age-unit").value;
    }
    for (const key of ["sex", "specimen", "hemolysis", "lab"]) state[key] = $(key).value;
    if (model.how.size) state.how = Array.from(model.how).sort().join(",");
    if ($("projector").checked) state.big = "1";
    return state;
  }

  function applyState(state) {
    for (const analyte of model.analytes) {
      $("value-" + analyte.id).value = state[analyte.id] || "";
      const unit = state[analyte.id + "_unit"];
      const select = $("unit-" + analyte.id);
      select.value = unit && analyte.accepted_units.some((u) => u.ucum === unit) ? unit : analyte.canonical_unit;
    }
    $("age").value = state.age || "";
    $("age-unit").value = state.age_unit === "days" ? "days" : "years";
    for (const key of ["sex", "specimen", "hemolysis", "lab"]) {
      const select = $(key);
      const wanted = state[key] || "";
      select.value = Array.from(select.options).some((o) => o.value === wanted) ? wanted : "";
    }
    model.how = new Set((state.how || "").split(",").filter(Boolean));
    $("projector").checked = state.big === "1";
    document.body.classList.toggle("projector", state.big === "1");
    markCurrentCase(state);
  }

  function sameCase(state, caseState) {
    const keys = new Set([...Object.keys(caseState), ...Object.keys(state)]);
    for (const key of keys) {
      if (key === "how" || key === "big") continue;
      if ((state[key] || "") !== (caseState[key] || "")) return false;
    }
    return true;
  }

  function markCurrentCase(state) {
    for (const button of document.querySelectorAll(".case-button")) {
      const found = model.cases.find((c) => c.id === button.dataset.case);
      button.setAttribute("aria-pressed", found && sameCase(state, found.state) ? "true" : "false");
    }
  }

  // ------------------------------------------------------------------ the request
  function parseNumber(text) {
    const normalised = text.replace(",", ".");
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(normalised)) return null;
    const value = Number(normalised);
    return Number.isFinite(value) ? value : null;
  }

  function buildRequest(state) {
    const results = [];
    const errors = [];
    for (const analyte of model.analytes) {
      if (!(analyte.id in state)) continue;
      const value = parseNumber(state[analyte.id]);
      if (value === null) {
        errors.push({ field: "value-" + analyte.id, text: displayName(analyte.id) + ": must be a number" });
        continue;
      }
      const result = { id: analyte.id, analyte: analyte.id, value, unit: state[analyte.id + "_unit"] };
      if (state.hemolysis) result.hemolysis = state.hemolysis;
      results.push(result);
    }
    const body = { results };
    const patient = {};
    if (state.age !== undefined) {
      const age = parseNumber(state.age);
      if (age === null) errors.push({ field: "age", text: "Age: must be a number" });
      else patient[state.age_unit === "days" ? "age_days" : "age_years"] = age;
    }
    if (state.sex) patient.sex = state.sex;
    if (Object.keys(patient).length) body.patient = patient;
    if (state.specimen) body.specimen = state.specimen;
    if (state.lab) body.lab = state.lab;
    return { body, errors };
  }

  // body[data-pending] is set from an edit until its answer (or error) is shown: tests and screen
  // captures wait on it, never on a time.
  function setPending(on) {
    if (on) document.body.dataset.pending = "true";
    else delete document.body.dataset.pending;
  }

  function schedule(immediate, push) {
    clearTimeout(model.timer);
    setPending(true);
    const state = collectState();
    writeFragment(state, push);
    markCurrentCase(state);
    if (immediate) interpret(state);
    else model.timer = setTimeout(() => interpret(state), DEBOUNCE_MS);
  }

  async function interpret(state) {
    clearErrors();
    const { body, errors } = buildRequest(state);
    if (errors.length) showClientErrors(errors);
    if (!body.results.length) {
      ++model.seq;
      if (model.controller) model.controller.abort();
      model.answer = null;
      render();
      setStatus(errors.length ? "Correct the marked fields." : "");
      setPending(false);
      return;
    }
    const seq = ++model.seq;
    if (model.controller) model.controller.abort();
    model.controller = new AbortController();
    setStatus("Interpreting...");
    let reply;
    try {
      reply = await getJson(API.interpret, {
        method: "POST", body: JSON.stringify(body), signal: model.controller.signal,
        headers: { "Content-Type": "application/json", Accept: "application/json, application/problem+json" },
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      if (seq === model.seq) {
        setStatus("The service could not be reached.");
        setPending(false);
      }
      return;
    }
    if (seq !== model.seq) return; // a newer request is under way
    if (reply.status === 200 && reply.body) {
      model.answer = reply.body;
      model.request = { body, state };
      render();
      const n = reply.body.results.length + reply.body.derived.length;
      setStatus(n + (n === 1 ? " result" : " results") + " interpreted" + (errors.length ? "; correct the marked fields." : "."));
    } else if (reply.status !== 401) { // on 401 the key form says why
      // The whole panel was refused: an answer to an older panel must not stay on screen.
      model.answer = null;
      render();
      showProblem(reply, body);
    }
    setPending(false);
  }

  // ------------------------------------------------------------------ errors
  function clearErrors() {
    for (const node of document.querySelectorAll(".field-error")) {
      node.textContent = "";
      node.hidden = true;
    }
    for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    const box = $("form-errors");
    box.textContent = "";
    box.hidden = true;
  }

  function markField(fieldId, text) {
    const input = $(fieldId);
    const message = $(fieldId === "age" ? "age-error" : fieldId.replace(/^(value|unit)-/, "error-"));
    if (input) input.setAttribute("aria-invalid", "true");
    if (message) {
      message.textContent = message.textContent ? message.textContent + " " + text : text;
      message.hidden = false;
      return true;
    }
    return false;
  }

  function showClientErrors(errors) {
    for (const error of errors) markField(error.field, error.text);
  }

  function showProblem(reply, body) {
    const problem = reply.body || {};
    const list = el("ul");
    for (const error of problem.errors || []) {
      const field = fieldForPointer(error.pointer, body);
      const text = (error.pointer || "/") + ": " + error.reason;
      if (!field || !markField(field, text)) list.append(el("li", { text }));
    }
    const box = $("form-errors");
    box.append(el("p", { text: "The service refused the request (" + reply.status + "): " + (problem.detail || problem.title || "") }));
    if (list.childElementCount) box.append(list);
    box.hidden = false;
    setStatus("The service refused the request: see the marked fields.");
  }

  function fieldForPointer(pointer, body) {
    const parts = (pointer || "").split("/");
    if (parts[1] === "results" && parts.length >= 4) {
      const result = body.results[Number(parts[2])];
      if (!result) return null;
      if (parts[3] === "unit") return "unit-" + result.analyte;
      return "value-" + result.analyte;
    }
    if (parts[1] === "patient" && (parts[2] === "age_years" || parts[2] === "age_days")) return "age";
    return null;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  // ------------------------------------------------------------------ rendering the answer
  function render() {
    const answer = model.answer;
    for (const id of ["results", "derived", "patterns"]) $(id).textContent = "";
    $("empty").hidden = Boolean(answer);
    $("disclaimer").hidden = !answer;
    $("about-answer").hidden = !answer;
    if (!answer) return;
    $("disclaimer").textContent = "";
    $("disclaimer").append(el("strong", { text: "Disclaimer (from the service): " }), answer.disclaimer);

    answer.results.forEach((result, index) => $("results").append(card(result, index, false)));
    if (answer.derived.length) {
      $("derived").append(el("h3", { class: "section-title", text: "Derived results" }));
      answer.derived.forEach((result, index) => $("derived").append(card(result, index, true)));
    }
    if (answer.patterns.length) {
      $("patterns").append(el("h3", { class: "section-title", text: "Combined patterns" }));
      for (const pattern of answer.patterns) $("patterns").append(patternBlock(pattern));
    }
    const about = $("about-answer");
    about.textContent = "";
    about.append(
      el("p", { class: "symptoms-note", text: answer.symptoms_note }),
      el("p", { text: "Reference data version " + answer.data_version + "; laboratory profile: " +
        (answer.laboratory || "none (service default)") + "." }));
  }

  function card(result, index, derived) {
    const name = displayName(result.analyte);
    const article = el("article", {
      class: "result-card zone-" + zoneOfResult(result), id: "result-" + result.analyte,
      "data-analyte": result.analyte, "data-flag": result.flag || "", "aria-labelledby": "title-" + result.analyte,
    });
    const typedUnit = unitLabel(result.input.unit);
    article.append(el("h3", { id: "title-" + result.analyte },
      name + " ", el("span", { class: "typed-value", text: fmt(result.input.value) + " " + typedUnit })));
    article.append(verdictList(result));
    article.append(bar(result));
    if (derived) article.append(formulaBlock(result));
    if (result.warnings.length) article.append(warningsBlock(result.warnings));
    article.append(symptomsBlock(result));
    if (result.notes.length) article.append(notesBlock(result.notes));
    article.append(howBlock(result, derived));
    return article;
  }

  function zoneOfResult(result) {
    if (result.classification === "indeterminate") return "unknown";
    if (result.critical) return "critical";
    return result.classification === "normal" ? "normal" : "abnormal";
  }

  function verdictList(result) {
    const list = el("dl", { class: "verdict" });
    const add = (term, cls, ...value) => list.append(el("div", {}, el("dt", { text: term }), el("dd", { class: cls }, ...value)));
    add("Flag", "flag", result.flag ? result.flag + ": " + result.flag_display : "none: the value was not classified");
    let classification = result.classification + ": " + CLASSIFICATION_WORDS[result.classification];
    if (result.classification_reason) classification += " (" + (REASON_WORDS[result.classification_reason] || result.classification_reason) + ")";
    if (result.condition) classification += "; " + result.condition;
    add("Classification", "classification", classification);
    add("Critical", "critical", result.critical ? "yes: a critical limit is reached" : "no");
    const ctcae = result.ctcae;
    add("CTCAE grade", "ctcae", ctcae
      ? "grade " + ctcae.grade + " (" + ctcae.term + ", CTCAE v" + ctcae.version + ")" +
        (ctcae.laboratory_only ? ", from the laboratory value only" : "")
      : "not graded" + (result.warnings.some((w) => w.code.startsWith("ctcae")) ? " (see the warnings)" : ""));
    return list;
  }

  function sourceCite(source) {
    return el("cite", { class: "source", text: source || "no source given" });
  }

  function warningsBlock(warnings) {
    const list = el("ul", { class: "warnings" });
    for (const warning of warnings) {
      list.append(el("li", { class: "warning", "data-code": warning.code },
        el("span", { class: "warning-label", text: "Warning: " }), warning.text,
        warning.source ? el("span", { class: "source-line" }, " Source: ", sourceCite(warning.source)) : null));
    }
    return el("section", { class: "warnings-block" }, el("h4", { text: "Warnings" }), list);
  }

  function symptomsBlock(result) {
    const section = el("section", { class: "symptoms-block" });
    if (!result.symptoms.length) {
      section.append(el("p", { class: "hint", text: result.condition
        ? "The service's symptom sources list no symptoms for this result."
        : "No symptoms are listed for a result that is not abnormal." }));
      return section;
    }
    section.append(el("h4", { text: "Symptoms the sources associate with " + result.condition }));
    for (const [system, title] of SYSTEM_TITLES) {
      const items = result.symptoms.filter((s) => s.system === system);
      if (!items.length) continue;
      const list = el("ul", { class: "symptoms", "data-system": system });
      for (const symptom of items) {
        list.append(el("li", { class: "symptom" }, el("span", { class: "symptom-text", text: symptom.text }),
          el("span", { class: "source-line" }, " Source: ", sourceCite(symptom.source))));
      }
      section.append(el("div", { class: "symptom-group" }, el("h5", { text: title }), list));
    }
    return section;
  }

  function notesBlock(notes) {
    const list = el("ul", { class: "notes" });
    for (const note of notes) {
      list.append(el("li", { class: "note" }, note.text,
        note.source ? el("span", { class: "source-line" }, " Source: ", sourceCite(note.source)) : null));
    }
    return el("section", { class: "notes-block" }, el("h4", { text: "Notes" }), list);
  }

  function formulaBlock(result) {
    const from = (result.derived_from || []).map((d) => displayName(d.analyte)).join(" and ");
    return el("section", { class: "formula-block" },
      el("h4", { text: "Formula" }),
      el("p", { class: "formula", text: result.formula }),
      el("p", { text: "Derived from: " + from + "." }),
      el("p", { class: "source-line" }, "Source: ", sourceCite(result.formula_source)));
  }

  function patternBlock(pattern) {
    const involved = pattern.results.map((r) => displayName(r.analyte) + (r.flag ? " (" + r.flag + ")" : "")).join(", ");
    return el("article", { class: "pattern", "data-pattern": pattern.id },
      el("h4", { text: pattern.title }),
      el("p", { text: pattern.text }),
      el("p", { text: "Results involved: " + involved + "." }),
      el("p", { class: "source-line" }, "Source: ", sourceCite(pattern.source)));
  }

  // ------------------------------------------------------------------ "How was this decided?"
  function howBlock(result, derived) {
    const key = result.analyte;
    const details = el("details", { class: "how", "data-analyte": key, open: model.how.has(key) });
    details.append(el("summary", { text: "How was this decided?" }));
    details.addEventListener("toggle", () => {
      if (details.open) model.how.add(key);
      else model.how.delete(key);
      writeFragment(collectState());
    });
    const basis = result.basis || {};
    const conversion = basis.conversion || {};
    const list = el("dl", { class: "how-list" });
    const add = (term, ...value) => list.append(el("dt", { text: term }), el("dd", {}, ...value));

    add("Rule applied", el("code", { text: basis.rule || "none" }));
    add("Conversion", conversionText(result, conversion));
    add("Reference interval", intervalText(result));
    add("Why this interval", whyText(result));
    add("Critical limits", criticalText(result.critical_limits));
    add("CTCAE grade edges", ctcaeText(result.ctcae, result.analyte));
    add("Implausible limits", implausibleText(basis.implausible_limits));
    details.append(list);
    details.append(intervalTable(derived ? "calcium" : result.analyte, result.reference_interval));
    details.append(sourcesList(result));
    return details;
  }

  function conversionText(result, conversion) {
    if (!conversion.factor) return "none";
    const from = unitLabel(conversion.from);
    const parts = [];
    if (conversion.factor === 1) parts.push(fmt(result.input.value) + " " + from + " is already in the canonical unit " + conversion.to + ".");
    else {
      parts.push(fmt(result.input.value) + " " + from + " x " + conversion.factor + " = " + fmt(result.value.value) + " " + conversion.to + ".");
      parts.push(" The bar shows " + from + " as canonical / " + conversion.factor + ".");
    }
    if (conversion.molar_mass_g_per_mol) parts.push(" Molar mass " + conversion.molar_mass_g_per_mol + " g/mol.");
    if (conversion.derived_with) parts.push(" Factor derived with " + conversion.derived_with + ".");
    return parts.join("");
  }

  function intervalText(result) {
    const ri = result.reference_interval;
    if (!ri) return "none applies" + noIntervalReason(result);
    const stated = ri.stated || {};
    return el("span", {}, fmt(ri.low) + " to " + fmt(ri.high) + " " + ri.unit + ", bounds inclusive (as stated by the source: " +
      fmt(stated.low) + " to " + fmt(stated.high) + " " + unitLabel(stated.unit || ri.unit) + "). Applies to: " + ri.applies_to +
      ". Origin: " + (ORIGIN_WORDS[ri.origin] || ri.origin) + ". Source: ", sourceCite(ri.source));
  }

  function noIntervalReason(result) {
    const warning = result.warnings.find((w) => w.code === "no_interval");
    return warning ? ": " + warning.text : ".";
  }

  function whyText(result) {
    const request = model.request ? model.request.body : {};
    const patient = request.patient || {};
    const parts = [];
    if ("age_years" in patient) parts.push("age " + patient.age_years + " years");
    else if ("age_days" in patient) parts.push("age " + patient.age_days + " days");
    else parts.push("age not given (the adult interval is assumed)");
    parts.push("sex " + (patient.sex || "not given"));
    parts.push("specimen " + (result.specimen || "not given") + (request.specimen ? "" : " (the default)"));
    parts.push("laboratory profile " + (model.answer.laboratory || "none"));
    const ri = result.reference_interval;
    let text = "The service picked the interval for: " + parts.join(", ") + ".";
    if (ri && ri.origin === "result") text = "The interval sent with the result replaces the default one.";
    if (ri) text += " The interval it chose applies to " + ri.applies_to + "; the table below lists every interval in the data for this analyte.";
    return text;
  }

  function criticalText(limits) {
    if (!limits) return "none in the data for this analyte";
    const side = (value, comparison, name) => value === null || value === undefined
      ? name + ": none in the data"
      : name + ": " + comparison + " " + fmt(value) + " " + limits.unit;
    const stated = limits.stated || {};
    return el("span", {}, side(limits.low, limits.low_comparison, "low") + "; " + side(limits.high, limits.high_comparison, "high") +
      " (as stated: " + fmt(stated.low) + " / " + fmt(stated.high) + " " + unitLabel(stated.unit || limits.unit) + "). Origin: " +
      (ORIGIN_WORDS[limits.origin] || limits.origin) + ". Source: ", sourceCite(limits.source));
  }

  function ctcaeText(ctcae, analyte) {
    if (!ctcae) {
      const listed = ((model.intervals[""] || {}).ctcae || []).filter((t) => t.analyte === analyte);
      if (!listed.length) return "not graded; the data hold no CTCAE grades for this analyte";
      const span = el("span", {}, "not graded for this result. The CTCAE v5.0 edges in the data for this analyte: ");
      listed.forEach((t, i) => {
        span.append((i ? "; " : "") + t.term + ": grade 2 from " + fmt(t.edges.grade_2) + ", grade 3 from " + fmt(t.edges.grade_3) +
          ", grade 4 from " + fmt(t.edges.grade_4) + " " + unitLabel(t.edges.unit) + (t.note ? " (" + t.note + ")" : ""));
      });
      span.append(". Source: ", sourceCite(listed[0].source));
      return span;
    }
    const edges = ctcae.edges || {};
    const unit = unitLabel(edges.unit || "");
    const text = ctcae.term + ": grade 2 from " + fmt(edges.grade_2) + ", grade 3 from " + fmt(edges.grade_3) +
      ", grade 4 from " + fmt(edges.grade_4) + " " + unit + " (canonical: " + (edges.canonical || []).map(fmt).join(", ") +
      "). Grade 1 lies between the reference limit and the grade 2 edge. " + ctcae.basis + "." + (ctcae.note ? " " + ctcae.note : "");
    return el("span", {}, text + " Source: ", sourceCite(ctcae.source));
  }

  function implausibleText(limits) {
    if (!limits) return "none";
    return el("span", {}, "below " + fmt(limits.low) + " or above " + fmt(limits.high) + " " + limits.unit + " (" +
      limits.policy + " policy). " + (limits.reasoning || "") + " Source: ", sourceCite(limits.source));
  }

  function intervalTable(analyte, used) {
    const rows = (model.intervals[model.request && model.request.body.lab || ""] || { intervals: [] }).intervals
      .filter((i) => i.analyte === analyte);
    if (!rows.length) return el("div", { class: "table-wrap" });
    // A scrolling region on narrow screens: focusable, so the keyboard can scroll it too.
    const wrap = el("div", { class: "table-wrap", tabindex: "0", role: "region",
      "aria-label": "Every interval in the data for " + displayName(analyte) });
    const table = el("table", { class: "interval-table" },
      el("caption", { text: "Every interval in the data for " + displayName(analyte) }),
      el("thead", {}, el("tr", {}, ["Applies to", "Interval (as stated)", "Used here", "Source"].map((h) => el("th", { scope: "col", text: h })))));
    const tbody = el("tbody");
    for (const row of rows) {
      // A laboratory's interval names its laboratory after the band: "from 18 years, serum (laboratory x)".
      const isUsed = Boolean(used && used.origin === row.origin &&
        (used.applies_to === row.applies_to || used.applies_to.startsWith(row.applies_to + " (")));
      const interval = row.established
        ? fmt(row.stated.low) + " to " + fmt(row.stated.high) + " " + unitLabel(row.stated.unit)
        : "none: " + (row.reason || "not established");
      tbody.append(el("tr", { class: isUsed ? "used" : null },
        el("td", { text: row.applies_to }), el("td", { text: interval }),
        el("td", { text: isUsed ? "yes, this one" : "" }), el("td", {}, sourceCite(row.source))));
    }
    table.append(tbody);
    wrap.append(table);
    return wrap;
  }

  function sourcesList(result) {
    const sources = new Set();
    const add = (s) => { if (s) sources.add(s); };
    add(result.reference_interval && result.reference_interval.source);
    add(result.critical_limits && result.critical_limits.source);
    add(result.ctcae && result.ctcae.source);
    add(result.basis && result.basis.implausible_limits && result.basis.implausible_limits.source);
    add(result.formula_source);
    for (const item of [...result.symptoms, ...result.notes, ...result.warnings]) add(item.source);
    const list = el("ul", { class: "sources" });
    for (const source of sources) list.append(el("li", {}, sourceCite(source)));
    return el("div", { class: "sources-block" }, el("h5", { text: "Sources used for this result" }), list);
  }

  // ------------------------------------------------------------------ the range bar
  function zoneAt(x, ri, cl, il) {
    if (il && ((il.low !== null && il.low !== undefined && x < il.low) || (il.high !== null && il.high !== undefined && x > il.high))) return "implausible";
    if (cl && ((cl.low !== null && cl.low !== undefined && x <= cl.low) || (cl.high !== null && cl.high !== undefined && x >= cl.high))) return "critical";
    if (!ri) return "unknown";
    if ((ri.low !== null && ri.low !== undefined && x < ri.low) || (ri.high !== null && ri.high !== undefined && x > ri.high)) return "abnormal";
    return "normal";
  }

  /** Zones between the limits, each drawn with a width by its kind (a schematic, piecewise-linear scale). */
  function zones(result) {
    const ri = result.reference_interval;
    const cl = result.critical_limits;
    const il = result.basis && result.basis.implausible_limits;
    const value = result.value.value;
    const edges = [ri && ri.low, ri && ri.high, cl && cl.low, cl && cl.high, il && il.low, il && il.high]
      .filter((x) => x !== null && x !== undefined && Number.isFinite(x));
    const top = Math.max(value, ...edges, 0) || 1;
    const highest = Math.max(...edges, 0);
    const end = (value > highest ? value : highest || top) * BAR_HEADROOM;
    const points = Array.from(new Set([0, ...edges.filter((x) => x > 0 && x < end), end])).sort((a, b) => a - b);
    const list = [];
    for (let i = 0; i < points.length - 1; i += 1) {
      const kind = zoneAt((points[i] + points[i + 1]) / 2, ri, cl, il);
      const last = list[list.length - 1];
      if (last && last.kind === kind) last.to = points[i + 1];
      else list.push({ from: points[i], to: points[i + 1], kind });
    }
    return list;
  }

  function scale(zoneList, left, width) {
    const total = zoneList.reduce((sum, z) => sum + ZONE_WEIGHT[z.kind], 0);
    let x = left;
    for (const zone of zoneList) {
      zone.x = x;
      zone.w = (width * ZONE_WEIGHT[zone.kind]) / total;
      x += zone.w;
    }
    return (value) => {
      for (const zone of zoneList) {
        if (value <= zone.to || zone === zoneList[zoneList.length - 1]) {
          const t = zone.to > zone.from ? (value - zone.from) / (zone.to - zone.from) : 0;
          return zone.x + Math.min(Math.max(t, 0), 1) * zone.w;
        }
      }
      return left + width;
    };
  }

  function bar(result) {
    const figure = el("figure", { class: "bar" });
    figure.append(drawBar(result, 600));
    figure.append(legend(result));
    return figure;
  }

  function typedConverter(result) {
    const factor = (result.basis && result.basis.conversion && result.basis.conversion.factor) || 1;
    return (canonical) => canonical / factor;
  }

  function barDescription(result) {
    const typed = unitLabel(result.input.unit);
    const toTyped = typedConverter(result);
    const canonicalUnit = result.value.unit;
    const ri = result.reference_interval;
    const cl = result.critical_limits;
    let text = displayName(result.analyte) + " " + fmt(result.input.value) + " " + typed;
    if (typed !== canonicalUnit) text += " (" + fmt(result.value.value) + " " + canonicalUnit + ")";
    text += ri ? ". Reference interval " + fmt(ri.low === null ? null : toTyped(ri.low)) + " to " + fmt(ri.high === null ? null : toTyped(ri.high)) + " " + typed
      : ". No reference interval applies";
    if (cl) {
      const sides = [];
      if (cl.low !== null) sides.push("low " + cl.low_comparison + " " + fmt(toTyped(cl.low)));
      if (cl.high !== null) sides.push("high " + cl.high_comparison + " " + fmt(toTyped(cl.high)));
      if (sides.length) text += ". Critical limits " + sides.join(", ") + " " + typed;
    }
    text += ". Verdict: " + (result.flag_display || "not classified") + ", " + CLASSIFICATION_WORDS[result.classification] +
      (result.critical ? ", critical" : "") + ".";
    return text;
  }

  function drawBar(result, width) {
    // Projector mode draws everything 1.3 times larger (the CSS enlarges the SVG text to match).
    const k = document.body.classList.contains("projector") ? 1.3 : 1;
    const pad = 10;
    const height = Math.round(92 * k);
    const barTop = Math.round(24 * k);
    const barHeight = Math.round(26 * k);
    const zoneList = zones(result);
    const x = scale(zoneList, pad, width - 2 * pad);
    const toTyped = typedConverter(result);
    const typed = unitLabel(result.input.unit);
    const canonicalUnit = result.value.unit;
    const titleId = "bar-title-" + result.analyte;
    const root = svg("svg", {
      class: "range-bar", role: "img", "aria-labelledby": titleId, width, height,
      viewBox: "0 0 " + width + " " + height, "data-analyte": result.analyte,
    });
    root.append(svg("title", { id: titleId, text: barDescription(result) }));
    const hatchId = "hatch-" + result.analyte;
    root.append(svg("defs", {}, svg("pattern", { id: hatchId, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      svg("line", { class: "hatch-line", x1: 0, y1: 0, x2: 0, y2: 6 }))));
    for (const zone of zoneList) {
      root.append(svg("rect", {
        class: "zone zone-" + zone.kind, x: zone.x.toFixed(2), y: barTop, width: Math.max(zone.w, 0).toFixed(2),
        height: barHeight, "data-from": zone.from, "data-to": zone.to,
      }));
      if (zone.kind === "implausible") {
        root.append(svg("rect", { class: "hatch", fill: "url(#" + hatchId + ")", x: zone.x.toFixed(2), y: barTop, width: zone.w.toFixed(2), height: barHeight }));
      }
    }
    const ri = result.reference_interval;
    const stated = ri && ri.stated && ri.stated.unit === result.input.unit ? ri.stated : null;
    if (ri) {
      const edges = [["low", ri.low, stated && stated.low, "end"], ["high", ri.high, stated && stated.high, "start"]];
      for (const [side, canonical, statedValue, anchor] of edges) {
        if (canonical === null || canonical === undefined) continue;
        const ex = x(canonical);
        const shift = anchor === "end" ? -3 : 3;
        root.append(svg("line", { class: "edge", x1: ex, x2: ex, y1: barTop - 2, y2: barTop + barHeight + 4 }));
        const typedValue = statedValue !== null && statedValue !== undefined ? statedValue : toTyped(canonical);
        root.append(svg("text", {
          class: "edge-label edge-" + side, x: ex + shift, y: barTop + barHeight + 16 * k, "text-anchor": anchor,
          text: fmt(typedValue) + (side === "high" ? " " + typed : ""),
        }));
        if (typed !== canonicalUnit) {
          root.append(svg("text", {
            class: "edge-label canonical edge-" + side + "-canonical", x: ex + shift, y: barTop + barHeight + 30 * k,
            "text-anchor": anchor, text: fmt(canonical) + (side === "high" ? " " + canonicalUnit : ""),
          }));
        }
      }
    }
    const vx = x(result.value.value);
    let label = fmt(result.input.value) + " " + typed;
    if (typed !== canonicalUnit) label += " = " + fmt(result.value.value) + " " + canonicalUnit;
    const labelWidth = label.length * 7 * k;
    const lx = Math.min(Math.max(vx, pad + labelWidth / 2), width - pad - labelWidth / 2);
    root.append(svg("text", { class: "marker-label", x: lx, y: 14 * k, "text-anchor": "middle", text: label }));
    root.append(svg("line", { class: "marker", x1: vx, x2: vx, y1: barTop - 6, y2: barTop + barHeight + 6, "data-value": result.value.value }));
    root.append(svg("polygon", {
      class: "marker-head", points: (vx - 6) + "," + (barTop - 8) + " " + (vx + 6) + "," + (barTop - 8) + " " + vx + "," + (barTop - 1),
    }));
    return root;
  }

  function legend(result) {
    const kinds = Array.from(new Set(zones(result).map((z) => z.kind)));
    const order = ["normal", "abnormal", "critical", "implausible", "unknown"];
    const list = el("ul", { class: "legend", "aria-hidden": "true" });
    for (const kind of order.filter((k) => kinds.includes(k))) {
      list.append(el("li", {}, el("span", { class: "swatch swatch-" + kind }), ZONE_WORDS[kind]));
    }
    return el("figcaption", {}, list, el("span", { class: "hint", text: "Zones are drawn to a schematic scale; the numbers are exact." }));
  }

  function redrawBars(force) {
    if (!model.answer) return;
    const all = [...model.answer.results, ...model.answer.derived];
    for (const figure of document.querySelectorAll("figure.bar")) {
      const old = figure.querySelector("svg");
      const result = all.find((r) => r.analyte === old.dataset.analyte);
      const width = Math.max(Math.floor(figure.clientWidth), 260);
      if (result && (force === true || Number(old.getAttribute("width")) !== width)) {
        figure.replaceChild(drawBar(result, width), old);
      }
    }
  }

  // ------------------------------------------------------------------ building the form
  function buildForm() {
    const rows = $("analyte-rows");
    rows.textContent = "";
    for (const analyte of model.analytes) {
      const valueId = "value-" + analyte.id;
      const unitId = "unit-" + analyte.id;
      const errorId = "error-" + analyte.id;
      const select = el("select", { id: unitId, name: analyte.id + "_unit", "aria-describedby": errorId });
      for (const unit of analyte.accepted_units) {
        select.append(el("option", { value: unit.ucum, text: unitLabel(unit.ucum) }));
      }
      select.value = analyte.canonical_unit;
      rows.append(el("div", { class: "analyte-row" },
        el("div", { class: "field value-field" },
          el("label", { for: valueId, text: analyte.display }),
          el("input", { id: valueId, name: analyte.id, type: "text", inputmode: "decimal", autocomplete: "off", "aria-describedby": errorId })),
        el("div", { class: "field unit-field" },
          el("label", { for: unitId }, el("span", { class: "visually-hidden", text: "Unit for " + analyte.display.toLowerCase() }),
            el("span", { "aria-hidden": "true", text: "unit" })),
          select),
        el("p", { class: "field-error", id: errorId, hidden: true })));
    }
  }

  function buildCases() {
    const list = $("case-list");
    list.textContent = "";
    for (const item of model.cases) {
      const button = el("button", { type: "button", class: "case-button", "data-case": item.id, "aria-pressed": "false" },
        el("span", { class: "case-title", text: item.title }), el("span", { class: "case-summary", text: item.summary }));
      button.addEventListener("click", () => {
        applyState(Object.assign({}, item.state, { big: $("projector").checked ? "1" : "" }));
        schedule(true, true);
      });
      list.append(button);
    }
  }

  async function loadIntervals(lab) {
    if (model.intervals[lab || ""]) return;
    const reply = await getJson(API.intervals + (lab ? "?lab=" + encodeURIComponent(lab) : ""));
    if (reply.status === 200) model.intervals[lab || ""] = reply.body;
  }

  function fillLabs() {
    const labs = (model.intervals[""] && model.intervals[""].laboratories) || [];
    const select = $("lab");
    for (const lab of labs) select.append(el("option", { value: lab, text: lab }));
    $("lab-field").hidden = labs.length === 0;
  }

  function showKeyForm(refused) {
    const form = $("key-form");
    form.hidden = false;
    $("key-why").textContent = refused
      ? "The service did not accept this API key. Type another one."
      : "This service asks for an API key on /v1. Type one to use the page; it is kept in this browser tab only, " +
        "never in the link.";
    setStatus("The service needs an API key.");
  }

  function setUpKeyForm() {
    try {
      model.apiKey = sessionStorage.getItem("labinterp-api-key") || "";
    } catch (e) {
      model.apiKey = "";
    }
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      model.apiKey = $("api-key").value.trim();
      try {
        sessionStorage.setItem("labinterp-api-key", model.apiKey);
      } catch (e) {
        /* storage refused: the key lasts until the page is closed */
      }
      $("key-form").hidden = true;
      start().catch(() => setStatus("The page could not start: the service did not answer."));
    });
  }

  async function start() {
    model.intervals = {};
    const [analytes, cases] = await Promise.all([getJson(API.analytes), getJson(CASES_URL), loadIntervals("")]);
    if (analytes.status !== 200) {
      $("analyte-rows").textContent = "The list of analytes could not be loaded from the service (status " +
        analytes.status + ").";
      return;
    }
    if (model.started) {
      await fromFragment();
      return;
    }
    model.started = true;
    model.analytes = analytes.body.analytes.filter((a) => !a.derived);
    for (const analyte of analytes.body.analytes) model.byId[analyte.id] = analyte;
    model.cases = cases.status === 200 ? cases.body.cases : [];
    buildForm();
    buildCases();
    fillLabs();
    const form = $("panel-form");
    form.addEventListener("input", (event) => {
      if (event.target.id === "projector") return;
      schedule(false);
    });
    form.addEventListener("change", async (event) => {
      if (event.target.id === "projector") {
        document.body.classList.toggle("projector", event.target.checked);
        writeFragment(collectState());
        redrawBars(true);
        return;
      }
      if (event.target.id === "lab") await loadIntervals(event.target.value);
      if (event.target.tagName === "SELECT") schedule(true);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      schedule(true);
    });
    $("clear").addEventListener("click", () => {
      applyState({ big: $("projector").checked ? "1" : "" });
      schedule(true);
    });
    // A link followed, the fragment edited, or Back/Forward: show what the address now says.
    const follow = () => {
      if (location.hash !== model.shownHash) fromFragment();
    };
    window.addEventListener("hashchange", follow);
    window.addEventListener("popstate", follow);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(redrawBars, 150);
    });
    await fromFragment();
    document.body.dataset.ready = "true";
  }

  async function fromFragment() {
    model.shownHash = location.hash;
    const state = readFragment();
    applyState(state);
    setPending(true);
    if (state.lab) await loadIntervals(state.lab);
    await interpret(collectState());
  }

  // The bar is first drawn 600 px wide, then redrawn at its figure's width once in the page.
  const observer = new MutationObserver(() => redrawBars());
  document.addEventListener("DOMContentLoaded", () => {
    observer.observe($("results"), { childList: true });
    observer.observe($("derived"), { childList: true });
    setUpKeyForm();
    start().catch(() => setStatus("The page could not start: the service did not answer."));
  });
})();
