#' @useDynLib scinrcodec, .registration = TRUE
#' @importFrom Rcpp evalCpp
NULL
