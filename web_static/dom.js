// The page's elements by id (every panel looks its controls up this way), and its selects' options.

export const $ = (id) => document.getElementById(id);

/** Choose `value` in a select if it is among its options (else the choice stays). */
export function chooseIfListed(select, value) {
  if ([...select.options].some((o) => o.value === value)) select.value = value;
}

/** Replace a select's options (`[value, text]` pairs), keeping the choice when it is still listed
 * (else the first option is chosen). */
export function fillSelect(select, options) {
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
  chooseIfListed(select, chosen);
}
