import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { AppServicesContext, createAppServices } from "./appServices";
import "./app.css";

const services = createAppServices((input, init) => fetch(input, init));
const root = document.getElementById("root");
if (root === null) throw new Error("index.html has no #root");

createRoot(root).render(
  <StrictMode>
    <AppServicesContext.Provider value={services}>
      <App />
    </AppServicesContext.Provider>
  </StrictMode>,
);
