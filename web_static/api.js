// The server's REST API: its envelope, and the error message shown next to the control that
// caused it.

export class ApiError extends Error {
  constructor(code, message, data = null) {
    super(message);
    this.code = code;
    this.data = data; // what the envelope says beyond the message (an unknown name's suggestions)
  }
}

export async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError("OFFLINE", "the server cannot be reached");
  }
  if (response.status === 401) {
    location.assign("/login"); // a password is set and this browser has not logged in (or it changed)
    throw new ApiError("UNAUTHORIZED", "log in first");
  }
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new ApiError("BAD_RESPONSE", `the server answered HTTP ${response.status}`);
  }
  if (!envelope.success) throw new ApiError(envelope.code, envelope.error, envelope.data || null);
  return envelope.data;
}

// Events seen per topic. A command's answer is older than any event that arrived while it was on
// its way (REST and the WebSocket are two connections), so it is shown only if none did.
export const eventsSeen = { camera: 0, mount: 0, session: 0, stack: 0, polar_align: 0 };

export async function commandShowing(topic, show, output, method, path, body) {
  const before = eventsSeen[topic];
  const data = await command(output, method, path, body);
  if (data && eventsSeen[topic] === before) show(data);
  return data;
}

/** Run a command; show its error in `output` (cleared on success). */
export async function command(output, method, path, body) {
  try {
    const data = await api(method, path, body);
    if (output) output.textContent = "";
    return data;
  } catch (error) {
    if (output) output.textContent = error.message;
    return null;
  }
}
