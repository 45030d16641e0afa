// Validates the Prometheus operator's resources in a rendered manifest stream (stdin) against
// the operator's own CRD schemas, as packaged by @kubernetes-models/prometheus-operator:
// kubernetes-validate knows only built-in kinds and skips custom resources.
//   kubectl kustomize deploy/kubernetes/overlays/prometheus-operator | node check-operator-resources.mjs
// Prints one line per resource; exits 1 if one does not validate, or if none was found.
// NODE_MODULES names the node_modules directory holding yaml and
// @kubernetes-models/prometheus-operator (deploy/validate.sh installs them and sets it).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.NODE_MODULES;
if (!modules) throw new Error("set NODE_MODULES to the node_modules directory with the models");
const load = (path) => import(pathToFileURL(join(modules, path)).href);
const { parseAllDocuments } = await load("yaml/dist/index.js");
const models = await load("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js");

let checked = 0;
let failed = 0;
for (const doc of parseAllDocuments(readFileSync(0, "utf8"))) {
  const resource = doc.toJS();
  if (!resource || resource.apiVersion !== "monitoring.coreos.com/v1") continue;
  const Model = models[resource.kind];
  const name = `${resource.kind}/${resource.metadata?.name}`;
  if (!Model) {
    console.log(`FAIL ${name}: no schema for this kind`);
    failed++;
    continue;
  }
  try {
    new Model(resource).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    failed++;
  }
  checked++;
}
if (checked === 0) {
  console.log("FAIL no monitoring.coreos.com/v1 resource in the input");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
