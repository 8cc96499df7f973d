/* <select data-autosubmit>: submit its form on change (no inline handlers: the CSP forbids them). */
"use strict";
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
});
