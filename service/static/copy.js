// The report page's "Copy pre-fill" button: puts the plain-text pre-fill (as sent in presentedForm) on the
// clipboard for pasting into the dictation system. Loaded from our own origin (the CSP allows no inline script).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy-prefill");
  var source = document.getElementById("prefill-plain");
  var status = document.getElementById("copy-status");
  if (!button || !source) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var text = source.textContent;
    var done = function () { status.textContent = "Copied " + text.length + " characters."; };
    var failed = function () { status.textContent = "Copy did not work here: select the text below and copy it."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  });
});
