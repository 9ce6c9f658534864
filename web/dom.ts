/** Small DOM helpers, so the console needs no UI framework. */

/** Returns the element with the given id, or throws when the page lacks it or it has another type. */
export function byId<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) {
    throw new Error(`console page is missing #${id} (${type.name})`);
  }
  return element;
}

/** Creates an element with text content or children, and optional attributes. */
export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** Returns a definition list (`<dl>`) of label and value pairs, skipping empty values. */
export function facts(pairs: readonly [string, string][]): HTMLDListElement {
  const list = element("dl", { class: "facts" });
  for (const [label, value] of pairs) {
    if (value !== "") {
      list.append(element("dt", {}, label), element("dd", {}, value));
    }
  }
  return list;
}
