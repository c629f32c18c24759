// What the server last said about the camera and the session. The capture button depends on both
// (no capture while exposing or while a session runs), so they live here rather than in their
// panels, which would otherwise import each other.

export const camera = { status: null, limits: { exposure: [1e-4, 230], iso: [100, 1600] } };
export const session = { status: null };
