// The review panel's view (anywidget ESM). Python owns every rule (holysheep_nb.review.session):
// this file draws the synced `view` and sends each key press or button as {press: key}.

const KEYS = new Set(["1", "2", "3", "4", "5", "6", "7", "8", "9", "Enter", "Backspace", "s", "S"]);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = element("div", "holysheep-review");
  root.tabIndex = 0;
  // Lumino (JupyterLab's shortcuts) leaves keys alone inside this attribute's element.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  el.appendChild(root);

  const send = (key) => model.send({ press: key });
  root.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !KEYS.has(event.key)) return;
    event.preventDefault();
    event.stopPropagation();
    send(event.key);
  });

  const draw = () => {
    const view = model.get("view");
    const labels = model.get("labels");
    root.replaceChildren();
    root.appendChild(element("div", "holysheep-review-status", view.status));
    if (view.finished) {
      root.appendChild(element("div", "holysheep-review-finished", view.finished));
    } else {
      const text = element("div", "holysheep-review-text");
      for (const [name, value] of view.fields) {
        const field = element("div", "holysheep-review-field");
        if (view.fields.length > 1) field.appendChild(element("b", null, `${name}: `));
        field.appendChild(document.createTextNode(value));
        text.appendChild(field);
      }
      root.appendChild(text);
      root.appendChild(element("div", "holysheep-review-model", view.model));
      if (view.other) root.appendChild(element("div", "holysheep-review-other", view.other));
      if (view.given) root.appendChild(element("div", "holysheep-review-given", view.given));
      const buttons = element("div", "holysheep-review-buttons");
      labels.forEach((label, index) => {
        const shown = index < 9 ? `${index + 1} ${label}` : label;
        const button = element("button", "holysheep-review-label", shown);
        if (label === view.predicted) button.classList.add("holysheep-review-predicted");
        button.addEventListener("click", () => {
          model.send({ choose: label });
          root.focus();
        });
        buttons.appendChild(button);
      });
      root.appendChild(buttons);
      if (view.raw) {
        const details = element("details", "holysheep-review-raw");
        details.appendChild(element("summary", null, "raw answer and reasoning"));
        details.appendChild(element("pre", null, view.raw));
        root.appendChild(details);
      }
    }
    const moves = element("div", "holysheep-review-moves");
    const shown = [["Backspace", "back (Backspace)"]];
    if (!view.finished) shown.push(["Enter", "accept (Enter)"], ["s", "skip (s)"]);
    for (const [key, text] of shown) {
      const button = element("button", "holysheep-review-move", text);
      button.addEventListener("click", () => {
        send(key);
        root.focus();
      });
      moves.appendChild(button);
    }
    root.appendChild(moves);
    root.appendChild(element("div", "holysheep-review-help", view.help));
  };

  model.on("change:view", draw);
  draw();
  requestAnimationFrame(() => root.focus({ preventScroll: true }));
}

export default { render };
