# Every exported function, class and S4 method has a help page, and no code uses a global that is not
# defined: what `R CMD check` calls undocumented code objects and S4 methods and undefined globals.

test_that("every export and S4 method of the package is documented", {
  undocumented <- unlist(tools::undoc(package = "scinrcodec", lib.loc = dirname(find.package("scinrcodec"))))
  expect_identical(unname(undocumented), character())
})

test_that("R CMD check's code usage check finds no undefined global", {
  # .sparse_array's cached constructor, assigned with <<- in its closure, was one
  expect_identical(capture.output(codetools::checkUsagePackage("scinrcodec", suppressLocalUnused = TRUE)),
                   character())
})
