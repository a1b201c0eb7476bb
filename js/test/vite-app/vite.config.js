// Workers as ES modules: the package's worker imports the WebAssembly glue as a module.
export default { worker: { format: "es" } };
