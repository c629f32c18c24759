// The page's elements by id: every panel looks its controls up this way.

export const $ = (id) => document.getElementById(id);
