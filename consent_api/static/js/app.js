// Entry point: load the portal, or explain what is missing (e.g. vendor files not copied).
import("./main.js").then((m) => m.start()).catch((err) => {
  console.error(err);
  const main = document.getElementById("main");
  main.replaceChildren();
  const box = document.createElement("div");
  box.className = "alert";
  box.setAttribute("role", "alert");
  const strong = document.createElement("strong");
  strong.textContent = "The portal could not start.";
  const p = document.createElement("p");
  p.className = "detail";
  p.textContent = `${err && err.message ? err.message : err}. If the server was just installed, run scripts/vendor_portal.sh (make setup does this).`;
  const wrap = document.createElement("div");
  wrap.append(strong, p);
  box.append(wrap);
  main.append(box);
});
