# Errors: the native core's typed errors arrive as "Kind\x1fmessage" and leave as R conditions of
# class c("sinr_<kind>", "sinr_error", "error", "condition") whose message is the Python reader's
# one line (CorruptFileError -> sinr_corrupt_file_error, and so on).

.error_class <- function(kind) {
  snake <- tolower(gsub("([a-z0-9])([A-Z])", "\\1_\\2", kind))
  c(paste0("sinr_", sub("^sinr_", "", snake)), "sinr_error", "error", "condition")
}

.sinr_stop <- function(kind, message) {
  stop(structure(class = .error_class(kind), list(message = message, call = NULL)))
}

# Evaluate a call into the native core, turning its errors into classed R conditions.
.native <- function(expr) {
  withCallingHandlers(expr, error = function(e) {
    parts <- strsplit(conditionMessage(e), "\x1f", fixed = TRUE)[[1L]]
    if (length(parts) == 2L) .sinr_stop(parts[[1L]], parts[[2L]])
  })
}
