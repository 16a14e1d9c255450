# Every exported function, class and S4 method has a help page (what `R CMD check` calls undocumented
# code objects and S4 methods): path() and path<- on a seed had none.

test_that("every export and S4 method of the package is documented", {
  undocumented <- unlist(tools::undoc(package = "scinrcodec", lib.loc = dirname(find.package("scinrcodec"))))
  expect_identical(unname(undocumented), character())
})
