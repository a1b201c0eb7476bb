// The one-line worker file an app writes, pointed at the built package.
import "../../../pkg/worker.js";
