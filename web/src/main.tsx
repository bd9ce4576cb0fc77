// Entry point: starts the model (log in with a saved session, or show the sign-in form) and
// renders the app into #app.
import { render } from "preact";
import { App } from "./app";
import { Peerline } from "./model";
import "./styles.css";

const model = new Peerline();
const root = document.getElementById("app");
if (root) render(<App model={model} />, root);
void model.start();
