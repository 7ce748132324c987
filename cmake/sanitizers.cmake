# ASan + UBSan for the test build (./mft test), libFuzzer for the fuzz build.
if(MFT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined -g -O1)
  add_link_options(-fsanitize=address,undefined)
endif()
if(MFT_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MFT_FUZZ needs clang: CC=clang")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -g -O1)
  add_link_options(-fsanitize=address,undefined)
endif()
