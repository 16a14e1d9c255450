library(testthat)
library(scinrcodec)
test_check("scinrcodec")
